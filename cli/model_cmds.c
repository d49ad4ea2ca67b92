/* attamba init | info | forward | generate | eval: make, inspect, run and measure models. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>

#include <cJSON.h>

#include "cli.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "ops/loss.h"
#include "train/task.h"

/* ---- shared option handling ---- */

typedef struct {
    const char *device, *devices, *split, *tensor_split, *model_dir, *boundaries;
    int chunk, window;
} model_opts;

enum { OPT_CHUNK = 1000, OPT_WINDOW, OPT_BOUNDARIES, OPT_DEVICE, OPT_MODEL, OPT_DEVICES, OPT_SPLIT, OPT_TENSOR_SPLIT };
#define MODEL_LONG_OPTS                                                                               \
    {"device", required_argument, 0, OPT_DEVICE}, {"model", required_argument, 0, OPT_MODEL},         \
        {"chunk", required_argument, 0, OPT_CHUNK}, {"window", required_argument, 0, OPT_WINDOW},     \
        {"boundaries", required_argument, 0, OPT_BOUNDARIES}, {"help", no_argument, 0, 'h'},          \
        {"devices", required_argument, 0, OPT_DEVICES}, {"split", required_argument, 0, OPT_SPLIT},   \
        {"tensor-split", required_argument, 0, OPT_TENSOR_SPLIT}

static const char *model_opts_help =
    "  --model DIR          model directory (config.json + model.safetensors)\n"
    "  --device P:D|gpu|cpu|accelerator   (default: $ATTAMBA_DEVICE, else first GPU, accelerator, CPU)\n"
    "  --devices LIST --split layer [--tensor-split 3,1]   the layers spread over a device set, in\n"
    "                       proportion to the shares (default equal); eval also --split rows: each\n"
    "                       device evaluates its share of every batch with a whole copy of the model\n"
    "  --chunk P            test-time chunk size (attamba)\n"
    "  --window L           test-time window of leading tokens\n"
    "  --boundaries S       uniform | cyclic | random | random:SEED\n";

/* Returns 1 when c was one of the shared options (*bad set when its value is bad). */
static int model_opt(model_opts *o, int c, const char *arg, int *bad) {
    double v = 0;
    switch (c) {
    case OPT_DEVICE: o->device = arg; return 1;
    case OPT_DEVICES: o->devices = arg; return 1;
    case OPT_SPLIT:
        if (strcmp(arg, "layer") && strcmp(arg, "rows") && strcmp(arg, "none"))
            *bad |= cli_error("model", "--split: layer, rows (eval) or none, not '%s'", arg);
        o->split = arg;
        return 1;
    case OPT_TENSOR_SPLIT: o->tensor_split = arg; return 1;
    case OPT_MODEL: o->model_dir = arg; return 1;
    case OPT_BOUNDARIES: o->boundaries = arg; return 1;
    case OPT_CHUNK:
        *bad |= !cli_number("model", "chunk", arg, 1, 1e6, 1, &v);
        o->chunk = (int)v;
        return 1;
    case OPT_WINDOW:
        *bad |= !cli_number("model", "window", arg, 0, 1e6, 1, &v);
        o->window = (int)v;
        return 1;
    }
    return 0;
}

static int parse_int(const char *cmd, const char *name, const char *arg, long lo, long hi, long *out) {
    double v;
    if (!cli_number(cmd, name, arg, (double)lo, (double)hi, 1, &v)) return 0;
    *out = (long)v;
    return 1;
}

static int parse_float(const char *cmd, const char *name, const char *arg, double lo, double hi, double *out) {
    return cli_number(cmd, name, arg, lo, hi, 0, out);
}

/* Parses "3,1" into n shares (n = the device count); says why not. */
static int parse_shares(const char *cmd, const char *arg, int n, double *share) {
    const char *p = arg;
    for (int i = 0; i < n; i++) {
        char *end;
        share[i] = strtod(p, &end);
        if (end == p || !(share[i] >= 0) || share[i] > 1e9 || (*end != ',' && *end) || (*end == ',') != (i < n - 1))
            return cli_error(cmd, "--tensor-split '%s': want %d non-negative numbers separated by commas", arg, n), 0;
        p = end + 1;
    }
    return 1;
}

/* Opens the devices (one, or a set with --split layer) and the model, applying overrides; prints
 * errors. ctxs has room for ATTAMBA_MAX_DEVICES; *n gets how many are open. */
static int open_model(const char *cmd, const model_opts *o, attamba_context **ctxs, int *n, model **m) {
    *n = 0;
    *m = NULL;
    if (!o->model_dir) return cli_error(cmd, "--model DIR is required"), 0;
    int split = o->split && !strcmp(o->split, "layer"), rows = o->split && !strcmp(o->split, "rows");
    if (o->tensor_split && !split) return cli_error(cmd, "--tensor-split needs --split layer"), 0;
    if (rows && strcmp(cmd, "eval")) return cli_error(cmd, "--split rows is for eval"), 0;
    if (!(*n = cli_open_devices(o->devices, o->device, ctxs))) return 0;
    double share[ATTAMBA_MAX_DEVICES];
    attamba_model_params p = attamba_model_params_default(); /* the public API's placement */
    p.devices = ctxs, p.n_devices = split ? *n : 1;
    p.split_mode = split ? ATTAMBA_SPLIT_LAYER : ATTAMBA_SPLIT_NONE;
    p.tensor_split = o->tensor_split ? share : NULL;
    if (*n > 1 && !split && !rows) {
        cli_error(cmd, "%d devices: give --split layer (or rows, for eval) to use them", *n);
    } else if (o->tensor_split && !parse_shares(cmd, o->tensor_split, *n, share)) {
    } else if (attamba_model_load_with(o->model_dir, &p, m) ||
               attamba_model_set_attention(*m, o->chunk, o->window >= 0 ? o->window : -1, o->boundaries)) {
        cli_error(cmd, "%s", attamba_context_last_error(ctxs[0]));
    } else {
        return 1;
    }
    attamba_model_destroy(*m);
    *m = NULL;
    cli_close_devices(ctxs, *n);
    *n = 0;
    return 0;
}

static void close_model(attamba_context **ctxs, int n, model *m) {
    attamba_model_destroy(m);
    cli_close_devices(ctxs, n);
}

/* A text file, at most max bytes of it (0 = all); prints why not and returns NULL. */
static char *read_text(const char *cmd, const char *path, size_t max, size_t *len) {
    char err[600];
    char *text = core_read_file(path, max, len, err, sizeof err);
    if (!text) cli_error(cmd, "%s", err);
    return text;
}

/* ---- init ---- */

/* cfg with the SentencePiece model at path as its tokenizer ("tokenizer.model" in the model directory):
 * vocab_size, bos_id and eos_id from it. */
static int use_tokenizer(const char *cmd, const char *path, model_config *cfg) {
    char err[1024];
    tokenizer *t = NULL;
    if (tokenizer_load_sentencepiece(path, &t, err, sizeof err)) return cli_error(cmd, "%s", err);
    cfg->tokenizer = TOKENIZER_SENTENCEPIECE;
    cfg->vocab_size = t->vocab_size, cfg->bos_id = t->bos_id, cfg->eos_id = t->eos_id;
    tokenizer_destroy(t);
    snprintf(cfg->tokenizer_file, sizeof cfg->tokenizer_file, "tokenizer.model");
    if (snprintf(cfg->tokenizer_path, sizeof cfg->tokenizer_path, "%s", path) >= (int)sizeof cfg->tokenizer_path)
        return cli_error(cmd, "--tokenizer: path too long");
    if (model_config_validate(cfg, err, sizeof err)) return cli_error(cmd, "%s", err);
    return 0;
}

/* A sentencepiece config's tokenizer file, checked against the config, copied into dir (which then
 * holds a self-contained model). */
static int copy_tokenizer(const char *cmd, const model_config *cfg, const char *dir) {
    if (cfg->tokenizer == TOKENIZER_BYTES) return 0;
    char err[1024];
    void *file = NULL;
    size_t size = 0;
    tokenizer *t = NULL;
    attamba_status s = tokenizer_file_read(cfg, &file, &size, err, sizeof err);
    if (!s) s = tokenizer_for_config(cfg, file, size, &t, err, sizeof err);
    if (!s) s = tokenizer_file_write(cfg, dir, file, size, err, sizeof err);
    tokenizer_destroy(t);
    free(file);
    return s ? cli_error(cmd, "%s", err) : 0;
}

int cli_init(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"preset", required_argument, 0, 'p'},
                                         {"seed", required_argument, 0, 's'},   {"out", required_argument, 0, 'o'},
                                         {"tokenizer", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *preset = NULL, *out = NULL, *spm = NULL;
    long seed = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:s:o:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'p': preset = optarg; break;
        case 's': if (!parse_int("init", "seed", optarg, 0, 2147483647L, &seed)) return 2; break;
        case 'o': out = optarg; break;
        case 't': spm = optarg; break;
        case 'h':
            printf("usage: attamba init (--config C.json | --preset tiny|small|paper-60m) [--seed S]\n"
                   "                    [--tokenizer FILE.model] --out DIR\n\n"
                   "Writes DIR/config.json and DIR/model.safetensors: a seeded random model (SPEC 3.1 init).\n"
                   "--tokenizer: a SentencePiece tokenizer (`attamba tokenizer train`) instead of bytes, copied\n"
                   "to DIR/tokenizer.model; vocab_size, bos_id and eos_id come from it. No device is needed.\n");
            return 0;
        default: return 2;
        }
    }
    if (!out || (!config == !preset)) return cli_error("init", "need --out DIR and one of --config or --preset"), 2;
    model_config cfg;
    char err[600];
    if ((config ? model_config_load(config, &cfg, err, sizeof err) : model_config_preset(preset, &cfg, err, sizeof err)))
        return cli_error("init", "%s", err);
    if (spm && use_tokenizer("init", spm, &cfg)) return 1;
    weight_info *list;
    int n;
    if (weights_list(&cfg, &list, &n)) return cli_error("init", "out of memory");
    int64_t numel = list[n - 1].offset + weight_numel(&list[n - 1]);
    float *host = malloc((size_t)numel * sizeof *host);
    if (!host) {
        free(list);
        return cli_error("init", "out of host memory for %lld parameters", (long long)numel);
    }
    weights_init_host(&cfg, list, n, (uint64_t)seed, host);
    int rc = 0;
    char *wpath = core_strdup_printf("%s/model.safetensors", out), *cpath = core_strdup_printf("%s/config.json", out);
    if (core_mkdirs(out) != 0) rc = cli_error("init", "cannot create %s", out);
    else if (weights_save_host(list, n, host, wpath, err, sizeof err)) rc = cli_error("init", "%s", err);
    else if (!(rc = copy_tokenizer("init", &cfg, out)) && model_config_save(&cfg, cpath, err, sizeof err))
        rc = cli_error("init", "%s", err);
    if (!rc)
        printf("wrote %s (%lld parameters, seed %ld) and %s%s%s\n", wpath, (long long)numel, seed, cpath,
               spm ? " with the tokenizer " : "", spm ? spm : "");
    free(wpath);
    free(cpath);
    free(host);
    free(list);
    return rc;
}

/* ---- quantize ---- */

int cli_quantize(int argc, char **argv) {
    static const struct option opts[] = {{"type", required_argument, 0, 't'}, {"in", required_argument, 0, 'i'},
                                         {"out", required_argument, 0, 'o'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL;
    int type = -1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if ((type = model_weight_type_parse(optarg)) < 0)
                return cli_error("quantize", "bad --type %s (f32, f16 or q8)", optarg), 2;
            break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'h':
            printf("usage: attamba quantize --type f16|q8|f32 --in DIR --out DIR\n\n"
                   "Writes the model in DIR with its projection matrices and output layer stored as f16 or q8\n"
                   "(8-bit values in blocks of 32 with an f32 scale; docs/weights.md); embeddings, norms, convs\n"
                   "and SSM parameters stay f32. f32 turns a quantized model back into f32 (its rounded values).\n"
                   "Such a model runs forward, generate and eval with the weights read in their type; training\n"
                   "needs f32. No device is needed.\n");
            return 0;
        default: return 2;
        }
    }
    if (!in || !out || type < 0) return cli_error("quantize", "need --type, --in DIR and --out DIR"), 2;
    model_config cfg;
    char err[600];
    char *cin = core_strdup_printf("%s/config.json", in), *win = core_strdup_printf("%s/model.safetensors", in);
    char *cout = core_strdup_printf("%s/config.json", out), *wout = core_strdup_printf("%s/model.safetensors", out);
    float *host = NULL;
    weight_info *list = NULL;
    int n = 0, rc = 0;
    if (!cin || !win || !cout || !wout) rc = cli_error("quantize", "out of host memory");
    else if (model_config_load(cin, &cfg, err, sizeof err) || weights_read_host(&cfg, win, &host, err, sizeof err))
        rc = cli_error("quantize", "%s", err);
    if (!rc) {
        cfg.weights = (weight_type)type;
        if (weights_list(&cfg, &list, &n)) rc = cli_error("quantize", "out of host memory");
    }
    int64_t low = 0, kept = 0;
    for (int i = 0; i < n && !rc; i++) {
        int64_t numel = weight_numel(&list[i]);
        if (list[i].dtype == TENSOR_F32) {
            kept += numel;
            continue;
        }
        low += numel;
        for (int64_t j = 0; j < numel && !rc; j++)
            if (!isfinite(host[list[i].offset + j]))
                rc = cli_error("quantize", "%s: tensor '%s' has a non-finite value at %lld", win, list[i].name, (long long)j);
    }
    if (!rc && core_mkdirs(out) != 0) rc = cli_error("quantize", "cannot create %s", out);
    if (!rc && weights_save_host(list, n, host, wout, err, sizeof err)) rc = cli_error("quantize", "%s", err);
    if (!rc) rc = copy_tokenizer("quantize", &cfg, out);
    if (!rc && model_config_save(&cfg, cout, err, sizeof err)) rc = cli_error("quantize", "%s", err);
    if (!rc)
        printf("wrote %s: %lld parameters as %s, %lld as f32; and %s\n", wout, (long long)low,
               model_weight_type_name(cfg.weights), (long long)kept, cout);
    free(host);
    free(list);
    free(cin);
    free(win);
    free(cout);
    free(wout);
    return rc;
}

/* ---- info ---- */

/* Device memory of a model at B x T, measured: the arenas and scratch a prefill and a decode step
 * of that size use, read from the context's accounting (attamba_context_memory). */
static int info_memory(const model_config *cfg, const char *device, int B, int64_t T, cJSON *json) {
    attamba_context *ctx = cli_open_device(device);
    if (!ctx) return 1;
    model *m = NULL;
    kv_cache *cache = NULL;
    int32_t *tok = malloc((size_t)B * (size_t)T * sizeof *tok);
    uint64_t base, after_prefill, after_decode, peak_prefill, peak_decode;
    int rc = !tok;
    if (!rc && (model_create(ctx, cfg, &m) || model_init_random(m, 1))) rc = 1;
    if (!rc) {
        for (int64_t i = 0; i < (int64_t)B * T; i++) tok[i] = (int32_t)((i * 7919) % cfg->vocab_size);
        attamba_context_memory(ctx, &base, NULL);
        ctx->mem_peak = base;
        tensor lg;
        rc = model_forward(m, tok, B, (int)T, &lg) != ATTAMBA_OK;
        if (!rc) tensor_free(&lg);
        attamba_context_memory(ctx, &after_prefill, &peak_prefill);
    }
    if (!rc) {
        ctx->mem_peak = after_prefill;
        tensor lg;
        rc = kv_cache_create(m, B, T + 1, &cache) || kv_cache_fill_synthetic(cache, T) ||
             model_decode_step(m, cache, tok, &lg);
        if (!rc) tensor_free(&lg);
        attamba_context_memory(ctx, &after_decode, &peak_decode);
    }
    if (rc) {
        cli_error("info", "measuring memory: %s", ctx->err);
    } else {
        int64_t ws = tensor_arena_bytes(&m->ws->arena), dws = tensor_arena_bytes(&cache->ws[0].arena);
        int64_t kv = kv_cache_bytes_allocated(cache), idle = (int64_t)ctx->mem_pool_idle;
        if (json) {
            cJSON *o = cJSON_AddObjectToObject(json, "device_memory");
            cJSON_AddStringToObject(o, "device", ctx->dev.info.name);
            cJSON_AddNumberToObject(o, "batch", B);
            cJSON_AddNumberToObject(o, "context", (double)T);
            cJSON_AddNumberToObject(o, "weights_bytes", (double)base);
            cJSON_AddNumberToObject(o, "prefill_arena_bytes", (double)ws);
            cJSON_AddNumberToObject(o, "prefill_peak_bytes", (double)peak_prefill);
            cJSON_AddNumberToObject(o, "kv_cache_bytes", (double)kv);
            cJSON_AddNumberToObject(o, "decode_arena_bytes", (double)dws);
            cJSON_AddNumberToObject(o, "decode_peak_bytes", (double)peak_decode);
            cJSON_AddNumberToObject(o, "scratch_pool_idle_bytes", (double)idle);
        } else {
            printf("device memory for %d x %lld tokens on %s (measured):\n", B, (long long)T, ctx->dev.info.name);
            printf("  weights                 %14llu\n", (unsigned long long)base);
            printf("  prefill activations     %14lld  (one arena, kept for the next prefill)\n", (long long)ws);
            printf("  prefill peak            %14llu  (weights + arena + logits + op scratch in use)\n",
                   (unsigned long long)peak_prefill);
            printf("  KV cache                %14lld  (%d sequence%s of %lld)\n", (long long)kv, B, B > 1 ? "s" : "",
                   (long long)T + 1);
            printf("  decode activations      %14lld\n", (long long)dws);
            printf("  decode peak             %14llu  (all of the above at once)\n", (unsigned long long)peak_decode);
            printf("  idle scratch, kept      %14lld  (not counted in use)\n", (long long)idle);
        }
    }
    kv_cache_destroy(cache);
    model_destroy(m);
    free(tok);
    attamba_context_destroy(ctx);
    return rc;
}

int cli_info(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"preset", required_argument, 0, 'p'},
                                         {"context", required_argument, 0, 'c'}, {"json", no_argument, 0, 'j'},
                                         {"batch", required_argument, 0, 'b'}, {"device", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *dir = NULL, *preset = NULL, *device = NULL;
    long context = 0, batch = 0;
    int c, json = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:c:jb:d:h", opts, NULL)) != -1) {
        if (c == 'm') dir = optarg;
        else if (c == 'p') preset = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'd') device = optarg;
        else if (c == 'c') {
            if (!parse_int("info", "context", optarg, 1, 1L << 24, &context)) return 2;
        } else if (c == 'b') {
            if (!parse_int("info", "batch", optarg, 1, 1L << 16, &batch)) return 2;
        } else if (c == 'h') {
            printf("usage: attamba info (--model DIR | --preset NAME) [--context T] [--batch B [--device P:D]] [--json]\n\n"
                   "Prints the config, the parameter count, and per context length the KV-cache bytes, the keys\n"
                   "a query visits per layer and the attention FLOPs per token (for T = 1K, 4K, 16K, 32K, or\n"
                   "only --context T). --json prints one object. No device is needed, except with --batch:\n"
                   "then a model of this config (random weights) runs a prefill of B x T and a decode step with\n"
                   "a cache of B sequences of T on the device, and the device memory each needs is printed as\n"
                   "measured (weights, activation arenas, KV cache, peaks).\n");
            return 0;
        } else return 2;
    }
    if (batch && !context) return cli_error("info", "--batch needs --context T"), 2;
    model_config cfg;
    char err[600];
    if (!dir == !preset) return cli_error("info", "need --model DIR or --preset NAME"), 2;
    if (dir) {
        char *cpath = core_strdup_printf("%s/config.json", dir);
        attamba_status s = model_config_load(cpath, &cfg, err, sizeof err);
        free(cpath);
        if (s) return cli_error("info", "%s", err);
    } else if (model_config_preset(preset, &cfg, err, sizeof err)) {
        return cli_error("info", "%s", err);
    }
    int64_t contexts[4] = {1024, 4096, 16384, 32768};
    int nc = 4;
    if (context) {
        contexts[0] = context;
        nc = 1;
    }
    model_config full = cfg;
    full.kind = MODEL_TRANSFORMER;
    full.pseudo = 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        char *text = model_config_to_json(&cfg);
        cJSON_AddItemToObject(o, "config", cJSON_Parse(text));
        free(text);
        cJSON_AddNumberToObject(o, "parameters", (double)model_config_param_count(&cfg));
        cJSON *a = cJSON_AddArrayToObject(o, "contexts");
        for (int i = 0; i < nc; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "context", (double)contexts[i]);
            cJSON_AddNumberToObject(e, "cache_bytes", (double)model_config_cache_bytes(&cfg, contexts[i]));
            cJSON_AddNumberToObject(e, "cache_bytes_full_attention", (double)model_config_cache_bytes(&full, contexts[i]));
            cJSON_AddNumberToObject(e, "key_visits_per_query", model_config_key_visits(&cfg, contexts[i]));
            cJSON_AddNumberToObject(e, "attention_flops_per_token", model_config_attention_flops(&cfg, contexts[i]));
            cJSON_AddItemToArray(a, e);
        }
        if (batch && info_memory(&cfg, device, (int)batch, context, o)) {
            cJSON_Delete(o);
            return 1;
        }
        char *out = cJSON_Print(o);
        printf("%s\n", out);
        free(out);
        cJSON_Delete(o);
        return 0;
    }
    char *text = model_config_to_json(&cfg);
    printf("%s\n", text);
    free(text);
    printf("parameters: %lld\n", (long long)model_config_param_count(&cfg));
    printf("%-9s %14s %11s %9s %13s %17s\n", "context", "cache bytes", "per token", "vs full", "keys/query", "attn FLOP/token");
    for (int i = 0; i < nc; i++) {
        int64_t T = contexts[i], b = model_config_cache_bytes(&cfg, T), f = model_config_cache_bytes(&full, T);
        printf("%-9lld %14lld %11.1f %8.2fx %13.1f %17.3g\n", (long long)T, (long long)b, (double)b / (double)T,
               (double)f / (double)b, model_config_key_visits(&cfg, T), model_config_attention_flops(&cfg, T));
    }
    return batch ? info_memory(&cfg, device, (int)batch, context, NULL) : 0;
}

/* ---- forward ---- */

int cli_forward(int argc, char **argv) {
    static const struct option opts[] = {MODEL_LONG_OPTS, {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    model_opts mo = {.window = -1};
    const char *input = NULL, *output = NULL;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:h", opts, NULL)) != -1) {
        if (model_opt(&mo, c, optarg, &bad)) continue;
        if (c == 'i') input = optarg;
        else if (c == 'o') output = optarg;
        else if (c == 'h') {
            printf("usage: attamba forward --model DIR --input tokens.txt --output logits.bin [options]\n\n"
                   "tokens.txt: one sequence per line, token ids separated by spaces. Writes the logits as raw\n"
                   "little-endian f32 [B, T, V] (T = the longest sequence; shorter ones are padded with id 0 at\n"
                   "the end, which does not change their earlier positions) and prints the shape.\n%s",
                   model_opts_help);
            return 0;
        } else return 2;
    }
    if (bad) return 2;
    if (!input || !output) return cli_error("forward", "--input and --output are required"), 2;
    size_t len;
    char *text = read_text("forward", input, 0, &len);
    if (!text) return 1;
    /* parse lines of ints */
    int B = 0, T = 0, cap = 1024, n = 0;
    int32_t *flat = malloc((size_t)cap * sizeof *flat);
    int *lens = NULL;
    int rc = 0;
    for (char *line = text, *next; line && *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        int count = 0;
        for (char *p = line, *end;; p = end) {
            while (*p == ' ' || *p == '\t' || *p == '\r') p++;
            if (!*p) break;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || (*end && *end != ' ' && *end != '\t' && *end != '\r')) {
                rc = cli_error("forward", "%s line %d: '%.10s' is not a token id", input, B + 1, p);
                break;
            }
            if (errno == ERANGE || v < 0 || v > INT32_MAX) { /* never wrap: 4294967297 is not token 1 */
                rc = cli_error("forward", "%s line %d: token id %.24s is out of range", input, B + 1, p);
                break;
            }
            if (n == cap) {
                int32_t *grown = realloc(flat, (size_t)cap * 2 * sizeof *flat);
                if (!grown) {
                    rc = cli_error("forward", "out of host memory");
                    break;
                }
                flat = grown;
                cap *= 2;
            }
            flat[n++] = (int32_t)v;
            count++;
        }
        if (!count || rc) continue;
        lens = realloc(lens, (size_t)(B + 1) * sizeof *lens);
        lens[B++] = count;
        if (count > T) T = count;
    }
    free(text);
    if (!rc && !B) rc = cli_error("forward", "%s holds no tokens", input);
    int32_t *tokens = rc ? NULL : calloc((size_t)B * T, sizeof *tokens);
    for (int b = 0, off = 0; tokens && b < B; off += lens[b++])
        memcpy(tokens + (size_t)b * T, flat + off, (size_t)lens[b] * sizeof *tokens);
    free(flat);
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES], *ctx = NULL;
    int n_ctx = 0;
    model *m = NULL;
    if (!rc && !open_model("forward", &mo, ctxs, &n_ctx, &m)) rc = 1;
    else if (!rc) {
        ctx = ctxs[0];
        int V = attamba_model_vocab_size(m);
        size_t nl = (size_t)B * T * V;
        float *host = malloc(nl * sizeof *host);
        double t0 = core_now();
        if (!host) {
            rc = cli_error("forward", "out of host memory for %zu logits", nl);
        } else if (attamba_model_forward(m, tokens, B, T, host)) {
            rc = cli_error("forward", "%s", attamba_context_last_error(ctx));
        } else {
            double secs = core_now() - t0;
            char *tmp = core_strdup_printf("%s.tmp", output);
            FILE *f = rc ? NULL : fopen(tmp, "wb");
            if (!rc && (!f || fwrite(host, sizeof *host, nl, f) != nl || fclose(f) != 0 || rename(tmp, output) != 0)) {
                rc = cli_error("forward", "cannot write %s", output);
                remove(tmp);
            }
            free(tmp);
            if (!rc) {
                printf("logits [%d, %d, %d] f32 little-endian -> %s (%.1f tokens/s)\nlengths:", B, T, V, output,
                       B * T / secs);
                for (int b = 0; b < B; b++) printf(" %d", lens[b]);
                printf("\n");
            }
        }
        free(host);
        close_model(ctxs, n_ctx, m);
    }
    free(tokens);
    free(lens);
    return rc;
}

/* ---- generate ---- */

int cli_generate(int argc, char **argv) {
    static const struct option opts[] = {MODEL_LONG_OPTS,
                                         {"prompt", required_argument, 0, 'p'},
                                         {"tokens", required_argument, 0, 'n'},
                                         {"temperature", required_argument, 0, 't'},
                                         {"top-k", required_argument, 0, 'k'},
                                         {"top-p", required_argument, 0, 'P'},
                                         {"min-p", required_argument, 0, 'M'},
                                         {"repeat-penalty", required_argument, 0, 'R'},
                                         {"repeat-last-n", required_argument, 0, 'N'},
                                         {"seed", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    model_opts mo = {.window = -1};
    const char *prompt = "";
    long n_new = 200, top_k = 0, seed = 0, last_n = 64;
    double temperature = 0.8, top_p = 1.0, min_p = 0.0, penalty = 1.0;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:n:t:k:P:M:R:N:s:h", opts, NULL)) != -1) {
        if (model_opt(&mo, c, optarg, &bad)) continue;
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'n': bad |= !parse_int("generate", "tokens", optarg, 0, 1000000, &n_new); break;
        case 't': bad |= !parse_float("generate", "temperature", optarg, 0, 100, &temperature); break;
        case 'k': bad |= !parse_int("generate", "top-k", optarg, 0, 1 << 30, &top_k); break;
        case 'P': bad |= !parse_float("generate", "top-p", optarg, 1e-6, 1, &top_p); break;
        case 'M': bad |= !parse_float("generate", "min-p", optarg, 0, 1, &min_p); break;
        case 'R': bad |= !parse_float("generate", "repeat-penalty", optarg, 1e-3, 1e3, &penalty); break;
        case 'N': bad |= !parse_int("generate", "repeat-last-n", optarg, 1, 65536, &last_n); break;
        case 's': bad |= !parse_int("generate", "seed", optarg, 0, 2147483647L, &seed); break;
        case 'h':
            printf("usage: attamba generate --model DIR --prompt TEXT [-n N] [--temperature T] [--top-k K]\n"
                   "                        [--top-p P] [--min-p P] [--repeat-penalty R [--repeat-last-n N]]\n"
                   "                        [--seed S] [options]\n\n"
                   "Streams N new tokens (default 200; temperature 0 = greedy), then prints tokens/s and the KV\n"
                   "cache bytes. Sampling: temperature, then top-k, top-p and min-p (drops tokens below P times\n"
                   "the most probable; default 0 = off); --repeat-penalty R (default 1 = off) first divides the\n"
                   "positive logits of the tokens among the last N (default 64) of prompt and output by R and\n"
                   "multiplies the negative ones, each distinct token once.\n%s", model_opts_help);
            return 0;
        default: return 2;
        }
    }
    if (bad) return 2;
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx;
    model *m;
    if (!open_model("generate", &mo, ctxs, &n_ctx, &m)) return 1;
    /* from here on, the public API alone (include/attamba/attamba.h) */
    attamba_context *ctx = ctxs[0];
    const attamba_tokenizer *tok = NULL;
    attamba_sampler *smp = NULL;
    attamba_session *ses = NULL;
    attamba_sampler_params sp = attamba_sampler_params_default();
    sp.temperature = (float)temperature, sp.top_k = (int)top_k, sp.top_p = (float)top_p, sp.min_p = (float)min_p;
    sp.repeat_penalty = (float)penalty, sp.repeat_last_n = (int)last_n, sp.seed = (uint64_t)seed;
    int V = attamba_model_vocab_size(m);
    size_t plen = strlen(prompt);
    int64_t np = 0;
    int32_t *ids = malloc((plen + 1) * sizeof *ids);
    float *logits = malloc((size_t)V * sizeof *logits);
    int rc = !ids || !logits ? ATTAMBA_ERR_OUT_OF_MEMORY : ATTAMBA_OK;
    if (!rc) rc = attamba_model_tokenizer(m, &tok);
    if (!rc) rc = attamba_tokenizer_encode(tok, prompt, plen, 1, ids, (int64_t)plen + 1, &np);
    int T = (int)np;
    if (!rc) rc = attamba_sampler_create(ctx, &sp, &smp);
    if (!rc) rc = attamba_session_create(m, T + n_new + 1, &ses);
    double t_prefill = 0, t_decode = 0;
    int generated = 0;
    if (!rc) {
        double t0 = core_now();
        for (int i = 1; i < T; i++) attamba_sampler_accept(smp, ids[i]); /* the prompt counts for the penalty */
        int32_t next = 0;
        rc = attamba_session_feed(ses, ids, T, logits); /* the next token comes from the last position's */
        if (!rc) rc = attamba_sampler_sample(smp, logits, V, &next);
        t_prefill = core_now() - t0;
        int shown = !rc; /* the prompt, then the tokens as they come */
        if (shown) fputs(prompt, stdout);
        t0 = core_now();
        for (long i = 0; i < n_new && !rc; i++) {
            char buf[64];
            size_t nb = 0;
            rc = attamba_tokenizer_decode(tok, &next, 1, buf, sizeof buf, &nb);
            fwrite(buf, 1, CORE_MIN(nb, sizeof buf), stdout);
            fflush(stdout);
            generated++;
            if (rc || next == attamba_tokenizer_eos(tok) || i + 1 == n_new) break;
            rc = attamba_session_feed(ses, &next, 1, logits);
            if (!rc) rc = attamba_sampler_sample(smp, logits, V, &next);
        }
        t_decode = core_now() - t0;
        if (shown) printf("\n");
    }
    if (rc) {
        cli_error("generate", "%s", rc == ATTAMBA_ERR_OUT_OF_MEMORY && !ids ? "out of host memory"
                                                                           : attamba_context_last_error(ctx));
    } else {
        int64_t bytes = attamba_session_cache_bytes(ses, 0), pos = attamba_session_position(ses, 0);
        fprintf(stderr, "\nprefill %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s (%.1f tokens/s); "
                        "KV cache %lld bytes (%.0f per token; a full-attention cache would hold %lld)\n",
                T, t_prefill, T / t_prefill, generated, t_decode, generated / (t_decode > 0 ? t_decode : 1e-9),
                (long long)bytes, (double)bytes / (double)pos,
                (long long)(pos * 2LL * m->cfg.n_kv_heads * m->cfg.head_dim * 4 * m->cfg.n_layers));
    }
    attamba_session_destroy(ses);
    attamba_sampler_destroy(smp);
    free(ids);
    free(logits);
    close_model(ctxs, n_ctx, m);
    return rc != 0;
}

/* ---- eval ---- */

/* What the model's attention sees, for eval's summary line: "attamba P=8 L=4 cyclic", "transformer-swa
 * L=49", "transformer". */
static const char *attention_desc(const model_config *c, char *buf, size_t n) {
    if (c->kind == MODEL_ATTAMBA)
        snprintf(buf, n, "attamba P=%d L=%d %s%s", c->chunk, c->window, boundary_strategy_name(c->boundaries),
                 c->pseudo ? " pseudo" : "");
    else if (c->kind == MODEL_TRANSFORMER_SWA)
        snprintf(buf, n, "%s L=%d", model_kind_name(c->kind), c->window);
    else
        snprintf(buf, n, "%s", model_kind_name(c->kind));
    return buf;
}

/* The greedy prediction after every position: argmax of the logits, on the device. */
static int predict_argmax(void *user, const int32_t *tokens, int B, int T, int32_t *argmax) {
    model *m = user;
    rt_ctx *ctx = m->ctx;
    tensor logits = {0}, rows = {0}, best = {0};
    attamba_status s = model_forward(m, tokens, B, T, &logits);
    if (!s) s = tensor_rows(&logits, &rows);
    if (!s) s = tensor_scratch(ctx, &best, TENSOR_I32, 1, (int64_t[]){(int64_t)B * T});
    if (!s) s = ops_argmax(ctx, &rows, &best);
    if (!s) s = tensor_download(&best, argmax);
    tensor_free(&best);
    tensor_free(&rows);
    tensor_free(&logits);
    return s != ATTAMBA_OK;
}

static void print_tallies(const char *title, const char *key, const task_tally *t, int n) {
    if (!n) return;
    printf("%s\n  %8s %10s %9s  %s\n", title, key, "items", "accuracy", "95% interval");
    for (int i = 0; i < n; i++) {
        double lo, hi;
        task_wilson(t[i].right, t[i].total, &lo, &hi);
        printf("  %8d %10lld %9.4f  [%.4f, %.4f]\n", t[i].key, (long long)t[i].total,
               (double)t[i].right / (double)t[i].total, lo, hi);
    }
}

static cJSON *tallies_json(const task_tally *t, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        double lo, hi;
        task_wilson(t[i].right, t[i].total, &lo, &hi);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "key", t[i].key);
        cJSON_AddNumberToObject(o, "right", (double)t[i].right);
        cJSON_AddNumberToObject(o, "items", (double)t[i].total);
        cJSON_AddNumberToObject(o, "accuracy", (double)t[i].right / (double)t[i].total);
        cJSON_AddNumberToObject(o, "lo", lo);
        cJSON_AddNumberToObject(o, "hi", hi);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

/* eval --task: exact-match accuracy on a task file (attamba data), with 95% intervals, by group, by
 * the fact's offset in its chunk (attamba models) and by distance; --json adds a machine copy. */
static int eval_task(const model_opts *mo, const char *kind, const char *data, long batch, const char *json) {
    char err[600];
    task_set t;
    if (task_read(data, &t, err, sizeof err)) return cli_error("eval", "%s", err);
    if (task_kind_from_name(kind) != t.kind) {
        cli_error("eval", "--task %s, but %s holds %s examples", kind, data, task_kind_name(t.kind));
        task_free(&t);
        return 2;
    }
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx, rc = 0;
    model *m;
    if (mo->split && !strcmp(mo->split, "rows")) {
        task_free(&t);
        return cli_error("eval", "--task runs on one device or --split layer, not --split rows");
    }
    if (!open_model("eval", mo, ctxs, &n_ctx, &m)) {
        task_free(&t);
        return 1;
    }
    for (int64_t i = 0; i < t.n && !rc; i++)
        if (t.tok[i] >= m->cfg.vocab_size)
            rc = cli_error("eval", "%s has token %d, outside the model's vocabulary of %d", data, t.tok[i],
                           m->cfg.vocab_size);
    task_report r;
    int chunk = m->cfg.kind == MODEL_ATTAMBA ? m->cfg.chunk : 0;
    double t0 = core_now();
    if (!rc && task_score(&t, m->cfg.bos_id, predict_argmax, m, (int)batch, chunk, &r))
        rc = cli_error("eval", "%s", attamba_context_last_error(ctxs[0]));
    if (!rc) {
        double lo, hi;
        task_wilson(r.all.right, r.all.total, &lo, &hi);
        char desc[96];
        printf("%s: %lld of %lld answers exact (greedy): accuracy %.4f, 95%% interval [%.4f, %.4f]  "
               "(%s; %lld examples of %d tokens in %.1f s)\n",
               task_kind_name(t.kind), (long long)r.all.right, (long long)r.all.total,
               (double)r.all.right / (double)r.all.total, lo, hi, attention_desc(&m->cfg, desc, sizeof desc),
               (long long)(t.n / t.example), t.example, core_now() - t0);
        if (r.tokens.total > r.all.total)
            printf("answer tokens right one by one: %lld of %lld (%.4f)\n", (long long)r.tokens.right,
                   (long long)r.tokens.total, (double)r.tokens.right / (double)r.tokens.total);
        print_tallies(t.kind == TASK_MQAR ? "by pairs in the example" : "by depth of the key (% of the filler)",
                      t.kind == TASK_MQAR ? "pairs" : "depth", r.group, r.n_group);
        print_tallies("by the fact's position in its chunk (model position mod P)", "offset", r.offset, r.n_offset);
        print_tallies("by distance from the fact to the answer (tokens, from)", "distance", r.distance, r.n_distance);
    }
    if (!rc && json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", task_kind_name(t.kind));
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddStringToObject(o, "model", mo->model_dir);
        cJSON_AddStringToObject(o, "kind", model_kind_name(m->cfg.kind));
        cJSON_AddNumberToObject(o, "chunk", m->cfg.chunk);
        cJSON_AddNumberToObject(o, "window", m->cfg.window);
        cJSON_AddStringToObject(o, "boundaries", boundary_strategy_name(m->cfg.boundaries));
        cJSON_AddNumberToObject(o, "kv_cache_bytes_per_layer", (double)model_config_cache_bytes(&m->cfg, t.example));
        cJSON_AddNumberToObject(o, "params", (double)model_config_param_count(&m->cfg));
        cJSON_AddNumberToObject(o, "examples", (double)(t.n / t.example));
        cJSON_AddNumberToObject(o, "seq", t.example);
        cJSON_AddItemToObject(o, "all", tallies_json(&r.all, 1));
        cJSON_AddItemToObject(o, "tokens", tallies_json(&r.tokens, 1));
        cJSON_AddItemToObject(o, "by_group", tallies_json(r.group, r.n_group));
        cJSON_AddItemToObject(o, "by_offset", tallies_json(r.offset, r.n_offset));
        cJSON_AddItemToObject(o, "by_distance", tallies_json(r.distance, r.n_distance));
        char *text = cJSON_Print(o);
        if (!text || core_write_file_atomic(json, text))
            rc = cli_error("eval", "cannot write %s", json);
        free(text);
        cJSON_Delete(o);
    }
    task_free(&t);
    close_model(ctxs, n_ctx, m);
    return rc;
}

/* The ids of text: its bytes for a byte model, else the model's tokenizer's ids, with the byte count of
 * each piece (*piece_bytes, [vocab]; NULL for bytes). Non-zero (message on the context) on failure. */
static int text_tokens(model *m, const char *text, size_t len, int32_t **ids, int64_t *n, int32_t **piece_bytes) {
    *ids = malloc((len ? len : 1) * sizeof **ids); /* a piece is at least one byte */
    *piece_bytes = NULL;
    if (!*ids) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %zu tokens", len);
    if (m->cfg.tokenizer == TOKENIZER_BYTES) {
        for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
        *n = (int64_t)len;
        return 0;
    }
    const attamba_tokenizer *tk;
    int V = m->cfg.vocab_size;
    if (attamba_model_tokenizer(m, &tk) || attamba_tokenizer_encode(tk, text, len, 0, *ids, (int64_t)len, n)) return 1;
    if (!(*piece_bytes = malloc((size_t)V * sizeof **piece_bytes)))
        return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int32_t id = 0; id < V; id++) {
        size_t nb = 0;
        attamba_tokenizer_decode(tk, &id, 1, NULL, 0, &nb);
        (*piece_bytes)[id] = (int32_t)nb;
    }
    return 0;
}

int cli_eval(int argc, char **argv) {
    static const struct option opts[] = {MODEL_LONG_OPTS, {"data", required_argument, 0, 'd'},
                                         {"seq", required_argument, 0, 'T'}, {"batch", required_argument, 0, 'b'},
                                         {"max-tokens", required_argument, 0, 'M'}, {"task", required_argument, 0, 'k'},
                                         {"json", required_argument, 0, 'j'}, {0, 0, 0, 0}};
    model_opts mo = {.window = -1};
    const char *data = NULL, *task = NULL, *json = NULL;
    long seq = 256, batch = 4, max_tokens = 0;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:T:b:M:k:j:h", opts, NULL)) != -1) {
        if (model_opt(&mo, c, optarg, &bad)) continue;
        switch (c) {
        case 'd': data = optarg; break;
        case 'k':
            if (!task_kind_from_name(optarg)) bad |= cli_error("eval", "--task: mqar or passkey, not '%s'", optarg);
            task = optarg;
            break;
        case 'j': json = optarg; break;
        case 'T': bad |= !parse_int("eval", "seq", optarg, 2, 1 << 20, &seq); break;
        case 'b': bad |= !parse_int("eval", "batch", optarg, 1, 4096, &batch); break;
        case 'M': bad |= !parse_int("eval", "max-tokens", optarg, 0, 1L << 40, &max_tokens); break;
        case 'h':
            printf("usage: attamba eval --model DIR --data FILE [--seq T] [--batch B] [--max-tokens N] [options]\n"
                   "       attamba eval --model DIR --task mqar|passkey --data FILE.task [--batch B] [--json OUT]\n\n"
                   "Perplexity and bits per byte of the model on a text file, cut into windows of T tokens\n"
                   "(BOS + T-1 tokens, every token predicted once): the model's tokens (bytes, or the pieces of\n"
                   "its SentencePiece tokenizer); perplexity per token, bits per byte = the summed loss / ln 2 /\n"
                   "the bytes those tokens cover. --max-tokens limits the bytes read.\n"
                   "With --task: exact-match (greedy) accuracy on a task file made by `attamba data`, with 95%%\n"
                   "Wilson intervals, by pairs or depth, by the fact's offset in its chunk and by distance.\n%s",
                   model_opts_help);
            return 0;
        default: return 2;
        }
    }
    if (bad) return 2;
    if (!data) return cli_error("eval", "--data FILE is required"), 2;
    if (task) return eval_task(&mo, task, data, batch, json);
    if (json) return cli_error("eval", "--json is for --task"), 2;
    size_t len;
    char *text = read_text("eval", data, (size_t)max_tokens, &len); /* reads no more than --max-tokens */
    if (!text) return 1;
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx;
    model *m;
    if (!open_model("eval", &mo, ctxs, &n_ctx, &m)) {
        free(text);
        return 1;
    }
    /* --split rows: a whole copy of the model on every device, each evaluating its share of a batch */
    model *reps[ATTAMBA_MAX_DEVICES] = {m};
    int n_rep = mo.split && !strcmp(mo.split, "rows") ? n_ctx : 1, rc = 0;
    for (int i = 1; i < n_rep && !rc; i++)
        if (model_load(ctxs[i], mo.model_dir, &reps[i]) ||
            model_set_attention(reps[i], mo.chunk, mo.window >= 0 ? mo.window : -1, mo.boundaries))
            rc = cli_error("eval", "%s", attamba_context_last_error(ctxs[i]));
    /* the text as the model's tokens, and the bytes of each (a byte model: the bytes themselves) */
    int32_t *ids = NULL, *piece_bytes = NULL;
    int64_t n_ids = 0;
    if (!rc && text_tokens(m, text, len, &ids, &n_ids, &piece_bytes))
        rc = cli_error("eval", "%s", attamba_context_last_error(ctxs[0]));
    int64_t per = seq - 1, windows = n_ids / per;
    if (!rc && windows < 1)
        rc = cli_error("eval", "%s has %lld tokens (%zu bytes), fewer than one window of %ld", data, (long long)n_ids,
                       len, per);
    int32_t *tok = malloc((size_t)batch * seq * sizeof *tok), *tgt = malloc((size_t)batch * seq * sizeof *tgt);
    double total = 0;
    int64_t counted = 0, bytes = 0;
    if (!rc && (!tok || !tgt)) rc = cli_error("eval", "out of host memory for --batch %ld x --seq %ld tokens", batch, seq);
    double t0 = core_now();
    for (int64_t w0 = 0; w0 < windows && !rc; w0 += batch) {
        int B = (int)CORE_MIN((int64_t)batch, windows - w0);
        for (int b = 0; b < B; b++) {
            const int32_t *src = ids + (w0 + b) * per;
            tok[b * seq] = m->cfg.bos_id;
            for (int t = 0; t < per; t++) {
                tok[b * seq + t + 1] = src[t];
                tgt[b * seq + t] = src[t];
                bytes += piece_bytes ? piece_bytes[src[t]] : 1;
            }
            tgt[b * seq + per] = -1; /* the last position predicts beyond the window: not counted */
        }
        double sum;
        int64_t count;
        if (model_loss_replicas(reps, n_rep, tok, tgt, B, (int)seq, &sum, &count)) {
            rc = cli_error("eval", "%s", attamba_context_last_error(ctxs[0]));
        } else {
            total += sum;
            counted += count;
        }
        char suffix[96];
        snprintf(suffix, sizeof suffix, "loss %.4f  %.0f tokens/s", counted ? total / counted : 0.0,
                 (double)counted / (core_now() - t0));
        core_progress("eval", (double)(w0 + B) / (double)windows, w0 + B >= windows || rc, suffix);
    }
    if (!rc) { /* perplexity per token; bits per byte of the text the tokens cover (the same for a byte model) */
        double loss = total / (double)counted;
        char desc[96];
        printf("tokens %lld  bytes %lld  loss %.4f  perplexity %.3f  bits/byte %.4f  (%s%s)\n", (long long)counted,
               (long long)bytes, loss, exp(loss), total / log(2.0) / (double)bytes,
               attention_desc(&m->cfg, desc, sizeof desc), piece_bytes ? ", sentencepiece tokens" : "");
    }
    free(ids);
    free(piece_bytes);
    free(tok);
    free(tgt);
    free(text);
    for (int i = 1; i < n_rep; i++) model_destroy(reps[i]);
    close_model(ctxs, n_ctx, m);
    return rc;
}
