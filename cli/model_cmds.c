/* attamba init | info | forward | generate | eval: make, inspect, run and measure models. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <cJSON.h>

#include "cli.h"

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
    "                       device evaluates its share of every batch (--tensor-split: the shares)\n"
    "                       with a whole copy of the model\n"
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
static int open_model(const char *cmd, const model_opts *o, attamba_context **ctxs, int *n, attamba_model **m) {
    *n = 0;
    *m = NULL;
    if (!o->model_dir) return cli_error(cmd, "--model DIR is required"), 0;
    int split = o->split && !strcmp(o->split, "layer"), rows = o->split && !strcmp(o->split, "rows");
    if (o->tensor_split && !split && !rows) return cli_error(cmd, "--tensor-split needs --split layer (or rows)"), 0;
    if (rows && strcmp(cmd, "eval")) return cli_error(cmd, "--split rows is for eval"), 0;
    if (!(*n = cli_open_devices(o->devices, o->device, ctxs))) return 0;
    double share[ATTAMBA_MAX_DEVICES];
    attamba_model_params p = attamba_model_params_default(); /* the public API's placement */
    p.devices = ctxs, p.n_devices = split || rows ? *n : 1;
    p.split_mode = split ? ATTAMBA_SPLIT_LAYER : rows ? ATTAMBA_SPLIT_ROWS : ATTAMBA_SPLIT_NONE;
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

static void close_model(attamba_context **ctxs, int n, attamba_model *m) {
    attamba_model_destroy(m);
    cli_close_devices(ctxs, n);
}

/* ---- init ---- */

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
    attamba_config *cfg;
    char err[1024];
    if (attamba_config_load(config ? config : preset, &cfg, err, sizeof err)) return cli_error("init", "%s", err);
    attamba_config_info info;
    int rc = 0;
    if (spm && attamba_config_use_tokenizer(cfg, spm, err, sizeof err)) rc = cli_error("init", "%s", err);
    else if (attamba_model_create_file(cfg, (uint64_t)seed, out, err, sizeof err)) rc = cli_error("init", "%s", err);
    if (!rc) {
        attamba_config_describe(cfg, &info);
        printf("wrote %s/model.safetensors (%lld parameters, seed %ld) and %s/config.json%s%s\n", out,
               (long long)info.parameters, seed, out, spm ? " with the tokenizer " : "", spm ? spm : "");
    }
    attamba_config_destroy(cfg);
    return rc;
}

/* ---- quantize ---- */

int cli_quantize(int argc, char **argv) {
    static const struct option opts[] = {{"type", required_argument, 0, 't'}, {"in", required_argument, 0, 'i'},
                                         {"out", required_argument, 0, 'o'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL, *type = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16") && strcmp(optarg, "q8"))
                return cli_error("quantize", "bad --type %s (f32, f16 or q8)", optarg), 2;
            type = optarg;
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
    if (!in || !out || !type) return cli_error("quantize", "need --type, --in DIR and --out DIR"), 2;
    int64_t low = 0, kept = 0;
    char err[1024];
    if (attamba_model_quantize(in, out, type, &low, &kept, err, sizeof err)) return cli_error("quantize", "%s", err);
    printf("wrote %s/model.safetensors: %lld parameters as %s, %lld as f32; and %s/config.json\n", out, (long long)low,
           type, (long long)kept, out);
    return 0;
}

/* ---- info ---- */

/* Device memory of a model at B x T, measured: the arenas and scratch a prefill and a decode step
 * of that size use, read from the context's accounting (attamba_config_measure_memory). */
/* --cache-type f32|f16 into *t; 0 (with the message) for anything else. */
static int parse_cache_type(const char *cmd, const char *arg, attamba_cache_type *t) {
    if (strcmp(arg, "f32") && strcmp(arg, "f16")) return cli_error(cmd, "--cache-type '%s': f32 or f16", arg), 0;
    *t = strcmp(arg, "f16") ? ATTAMBA_CACHE_F32 : ATTAMBA_CACHE_F16;
    return 1;
}

static int info_memory(const attamba_config *cfg, const char *device, int B, int64_t T, attamba_cache_type ct,
                       cJSON *json) {
    attamba_context *ctx = cli_open_device(device);
    if (!ctx) return 1;
    attamba_memory_report r;
    int rc = 0;
    if (attamba_config_measure_memory_with(ctx, cfg, B, T, ct, &r)) {
        rc = cli_error("info", "measuring memory: %s", attamba_context_last_error(ctx));
    } else if (json) {
        cJSON *o = cJSON_AddObjectToObject(json, "device_memory");
        cJSON_AddStringToObject(o, "device", attamba_context_device(ctx)->name);
        cJSON_AddNumberToObject(o, "batch", B);
        cJSON_AddNumberToObject(o, "context", (double)T);
        cJSON_AddNumberToObject(o, "weights_bytes", (double)r.weights);
        cJSON_AddNumberToObject(o, "prefill_arena_bytes", (double)r.prefill_arena);
        cJSON_AddNumberToObject(o, "prefill_peak_bytes", (double)r.prefill_peak);
        cJSON_AddNumberToObject(o, "kv_cache_bytes", (double)r.kv_cache);
        cJSON_AddNumberToObject(o, "decode_arena_bytes", (double)r.decode_arena);
        cJSON_AddNumberToObject(o, "decode_peak_bytes", (double)r.decode_peak);
        cJSON_AddNumberToObject(o, "scratch_pool_idle_bytes", (double)r.idle_scratch);
    } else {
        printf("device memory for %d x %lld tokens on %s (measured):\n", B, (long long)T,
               attamba_context_device(ctx)->name);
        printf("  weights                 %14llu\n", (unsigned long long)r.weights);
        printf("  prefill activations     %14lld  (one arena, kept for the next prefill)\n",
               (long long)r.prefill_arena);
        printf("  prefill peak            %14llu  (weights + arena + logits + op scratch in use)\n",
               (unsigned long long)r.prefill_peak);
        printf("  KV cache                %14lld  (%d sequence%s of %lld)\n", (long long)r.kv_cache, B,
               B > 1 ? "s" : "", (long long)T + 1);
        printf("  decode activations      %14lld\n", (long long)r.decode_arena);
        printf("  decode peak             %14llu  (all of the above at once)\n", (unsigned long long)r.decode_peak);
        printf("  idle scratch, kept      %14lld  (not counted in use)\n", (long long)r.idle_scratch);
    }
    attamba_context_destroy(ctx);
    return rc;
}

/* What info prints: the config, its parameters and its costs at each context, then the measured memory. */
static int info_print(const attamba_config *cfg, const int64_t *contexts, int nc, int json, int batch,
                      const char *device, attamba_cache_type ct) {
    attamba_config_info info;
    attamba_config_describe(cfg, &info);
    char *text = attamba_config_json(cfg);
    if (!text) return cli_error("info", "out of host memory");
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "config", cJSON_Parse(text));
        free(text);
        cJSON_AddNumberToObject(o, "parameters", (double)info.parameters);
        cJSON_AddStringToObject(o, "cache_type", ct == ATTAMBA_CACHE_F16 ? "f16" : "f32");
        cJSON *a = cJSON_AddArrayToObject(o, "contexts");
        for (int i = 0; i < nc; i++) {
            attamba_config_cost k;
            attamba_config_estimate_with(cfg, contexts[i], ct, &k);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "context", (double)contexts[i]);
            cJSON_AddNumberToObject(e, "cache_bytes", (double)k.cache_bytes);
            cJSON_AddNumberToObject(e, "cache_bytes_full_attention", (double)k.cache_bytes_full);
            cJSON_AddNumberToObject(e, "key_visits_per_query", k.key_visits);
            cJSON_AddNumberToObject(e, "attention_flops_per_token", k.attention_flops);
            cJSON_AddItemToArray(a, e);
        }
        if (batch && info_memory(cfg, device, batch, contexts[0], ct, o)) {
            cJSON_Delete(o);
            return 1;
        }
        char *out = cJSON_Print(o);
        printf("%s\n", out);
        free(out);
        cJSON_Delete(o);
        return 0;
    }
    printf("%s\n", text);
    free(text);
    printf("parameters: %lld\n", (long long)info.parameters);
    printf("%-9s %14s %11s %9s %13s %17s\n", "context", "cache bytes", "per token", "vs full", "keys/query",
           "attn FLOP/token");
    for (int i = 0; i < nc; i++) {
        attamba_config_cost k;
        int64_t T = contexts[i];
        attamba_config_estimate_with(cfg, T, ct, &k);
        printf("%-9lld %14lld %11.1f %8.2fx %13.1f %17.3g\n", (long long)T, (long long)k.cache_bytes,
               (double)k.cache_bytes / (double)T, (double)k.cache_bytes_full / (double)k.cache_bytes, k.key_visits,
               k.attention_flops);
    }
    return batch ? info_memory(cfg, device, batch, contexts[0], ct, NULL) : 0;
}

int cli_info(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"preset", required_argument, 0, 'p'},
                                         {"context", required_argument, 0, 'c'}, {"json", no_argument, 0, 'j'},
                                         {"batch", required_argument, 0, 'b'}, {"device", required_argument, 0, 'd'},
                                         {"cache-type", required_argument, 0, 'C'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *preset = NULL, *device = NULL;
    long context = 0, batch = 0;
    int c, json = 0;
    attamba_cache_type ct = ATTAMBA_CACHE_F32;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:c:jb:d:C:h", opts, NULL)) != -1) {
        if (c == 'm') dir = optarg;
        else if (c == 'C') {
            if (!parse_cache_type("info", optarg, &ct)) return 2;
        }
        else if (c == 'p') preset = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'd') device = optarg;
        else if (c == 'c') {
            if (!parse_int("info", "context", optarg, 1, 1L << 24, &context)) return 2;
        } else if (c == 'b') {
            if (!parse_int("info", "batch", optarg, 1, 1L << 16, &batch)) return 2;
        } else if (c == 'h') {
            printf("usage: attamba info (--model DIR | --preset NAME) [--context T] [--batch B [--device P:D]]\n"
                   "                    [--cache-type f32|f16] [--json]\n\n"
                   "Prints the config, the parameter count, and per context length the KV-cache bytes, the keys\n"
                   "a query visits per layer and the attention FLOPs per token (for T = 1K, 4K, 16K, 32K, or\n"
                   "only --context T). --json prints one object. No device is needed, except with --batch:\n"
                   "then a model of this config (random weights) runs a prefill of B x T and a decode step with\n"
                   "a cache of B sequences of T on the device, and the device memory each needs is printed as\n"
                   "measured (weights, activation arenas, KV cache, peaks). --cache-type: the stored keys and\n"
                   "values of both the estimate and the measured caches (as `generate --cache-type`).\n");
            return 0;
        } else return 2;
    }
    if (batch && !context) return cli_error("info", "--batch needs --context T"), 2;
    if (!dir == !preset) return cli_error("info", "need --model DIR or --preset NAME"), 2;
    attamba_config *cfg;
    char err[1024], path[4200];
    if (dir && snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return cli_error("info", "--model: path too long");
    if (attamba_config_load(dir ? path : preset, &cfg, err, sizeof err)) return cli_error("info", "%s", err);
    int64_t contexts[4] = {1024, 4096, 16384, 32768};
    int nc = 4;
    if (context) {
        contexts[0] = context;
        nc = 1;
    }
    int rc = info_print(cfg, contexts, nc, json, (int)batch, device, ct);
    attamba_config_destroy(cfg);
    return rc;
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
    char *text = cli_read_file("forward", input, 0, &len);
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
    attamba_model *m = NULL;
    if (!rc && !open_model("forward", &mo, ctxs, &n_ctx, &m)) rc = 1;
    else if (!rc) {
        ctx = ctxs[0];
        int V = attamba_model_vocab_size(m);
        size_t nl = (size_t)B * T * V;
        float *host = malloc(nl * sizeof *host);
        double t0 = cli_now();
        if (!host) {
            rc = cli_error("forward", "out of host memory for %zu logits", nl);
        } else if (attamba_model_forward(m, tokens, B, T, host)) {
            rc = cli_error("forward", "%s", attamba_context_last_error(ctx));
        } else {
            double secs = cli_now() - t0;
            rc = cli_write_file("forward", output, host, nl * sizeof *host);
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
                                         {"warmup", required_argument, 0, 'w'},
                                         {"cache-type", required_argument, 0, 'C'},
                                         {0, 0, 0, 0}};
    model_opts mo = {.window = -1};
    const char *prompt = "";
    long n_new = 200, top_k = 0, seed = 0, last_n = 64, warmup = 0;
    double temperature = 0.8, top_p = 1.0, min_p = 0.0, penalty = 1.0;
    attamba_session_params spar = attamba_session_params_default(0);
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:n:t:k:P:M:R:N:s:w:C:h", opts, NULL)) != -1) {
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
        case 'w': bad |= !parse_int("generate", "warmup", optarg, 0, 100, &warmup); break;
        case 'C': bad |= !parse_cache_type("generate", optarg, &spar.cache_type); break;
        case 'h':
            printf("usage: attamba generate --model DIR --prompt TEXT [-n N] [--temperature T] [--top-k K]\n"
                   "                        [--top-p P] [--min-p P] [--repeat-penalty R [--repeat-last-n N]]\n"
                   "                        [--seed S] [--warmup W] [--cache-type f32|f16] [options]\n\n"
                   "Streams N new tokens (default 200; temperature 0 = greedy), then prints tokens/s and the KV\n"
                   "cache bytes. Sampling: temperature, then top-k, top-p and min-p (drops tokens below P times\n"
                   "the most probable; default 0 = off); --repeat-penalty R (default 1 = off) first divides the\n"
                   "positive logits of the tokens among the last N (default 64) of prompt and output by R and\n"
                   "multiplies the negative ones, each distinct token once. --warmup W: W untimed runs first, each\n"
                   "in a session of its own: a prefill of the prompt and, when N > 1, one decode step (a\n"
                   "benchmark's warm-up: the first prefill and the first decode step of a process also load\n"
                   "their kernels and create their scratch buffers; llama-bench warms up the same way).\n"
                   "--cache-type: the KV cache's stored keys and values (default f32; f16: half the bytes,\n"
                   "rounded to half, as llama.cpp's default cache).\n%s",
                   model_opts_help);
            return 0;
        default: return 2;
        }
    }
    if (bad) return 2;
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx;
    attamba_model *m;
    if (!open_model("generate", &mo, ctxs, &n_ctx, &m)) return 1;
    attamba_context *ctx = ctxs[0];
    const attamba_tokenizer *tok = NULL;
    attamba_sampler *smp = NULL;
    attamba_session *ses = NULL;
    attamba_config *cfg = NULL;
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
    spar.max_tokens = T + n_new + 1;
    for (long w = 0; w < warmup && !rc; w++) { /* untimed runs in throwaway sessions */
        rc = attamba_session_create_with(m, &spar, &ses);
        if (!rc) rc = attamba_session_feed(ses, ids, T, logits);
        int32_t any = ids[0]; /* a decode step as the timed ones take it */
        if (!rc && n_new > 1) rc = attamba_session_step_sample(ses, &any, &smp, &any);
        attamba_session_destroy(ses);
        ses = NULL;
    }
    if (!rc) attamba_sampler_reset(smp); /* the warm-up's draws forgotten */
    if (!rc) rc = attamba_session_create_with(m, &spar, &ses);
    double t_prefill = 0, t_decode = 0;
    int generated = 0;
    if (!rc) {
        double t0 = cli_now();
        for (int i = 1; i < T; i++) attamba_sampler_accept(smp, ids[i]); /* the prompt counts for the penalty */
        int32_t next = 0;
        rc = attamba_session_feed(ses, ids, T, logits); /* the next token comes from the last position's */
        if (!rc) rc = attamba_sampler_sample(smp, logits, V, &next);
        t_prefill = cli_now() - t0;
        int shown = !rc; /* the prompt, then the tokens as they come */
        if (shown) fputs(prompt, stdout);
        t0 = cli_now();
        for (long i = 0; i < n_new && !rc; i++) {
            char buf[64];
            size_t nb = 0;
            rc = attamba_tokenizer_decode(tok, &next, 1, buf, sizeof buf, &nb);
            fwrite(buf, 1, CLI_MIN(nb, sizeof buf), stdout);
            fflush(stdout);
            generated++;
            if (rc || next == attamba_tokenizer_eos(tok) || i + 1 == n_new) break;
            rc = attamba_session_step_sample(ses, &next, &smp, &next); /* greedy: the argmax on the device */
        }
        t_decode = cli_now() - t0;
        if (shown) printf("\n");
    }
    if (rc) {
        cli_error("generate", "%s", rc == ATTAMBA_ERR_OUT_OF_MEMORY && !ids ? "out of host memory"
                                                                           : attamba_context_last_error(ctx));
    } else if (attamba_model_get_config(m, &cfg)) {
        rc = cli_error("generate", "%s", attamba_context_last_error(ctx));
    } else {
        int64_t bytes = attamba_session_cache_bytes(ses, 0), pos = attamba_session_position(ses, 0);
        attamba_config_cost cost; /* what a full-attention cache of the same width and depth would hold */
        attamba_config_estimate(cfg, pos, &cost);
        fprintf(stderr, "\nprefill %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s (%.1f tokens/s); "
                        "KV cache %lld bytes (%.0f per token; a full-attention cache would hold %lld)\n",
                T, t_prefill, T / t_prefill, generated, t_decode, generated / (t_decode > 0 ? t_decode : 1e-9),
                (long long)bytes, (double)bytes / (double)pos,
                (long long)cost.cache_bytes_full);
    }
    attamba_config_destroy(cfg);
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
static const char *attention_desc(const attamba_config_info *c, char *buf, size_t n) {
    if (!strcmp(c->kind, "attamba"))
        snprintf(buf, n, "attamba P=%d L=%d %s%s", c->chunk, c->window, c->boundaries, c->pseudo ? " pseudo" : "");
    else if (!strcmp(c->kind, "transformer-swa"))
        snprintf(buf, n, "%s L=%d", c->kind, c->window);
    else
        snprintf(buf, n, "%s", c->kind);
    return buf;
}

/* The model's config in force (after the attention overrides): its main fields, and what a sequence of
 * `context` tokens costs. Non-zero (said) on failure. */
static int model_describe(attamba_context *ctx, attamba_model *m, int64_t context, attamba_config_info *info,
                          attamba_config_cost *cost) {
    attamba_config *cfg;
    if (attamba_model_get_config(m, &cfg)) return cli_error("eval", "%s", attamba_context_last_error(ctx));
    attamba_config_describe(cfg, info);
    if (cost) attamba_config_estimate(cfg, context, cost);
    attamba_config_destroy(cfg);
    return 0;
}

static void print_tallies(const char *title, const char *key, const attamba_tally *t, int n) {
    if (!n) return;
    printf("%s\n  %8s %10s %9s  %s\n", title, key, "items", "accuracy", "95% interval");
    for (int i = 0; i < n; i++)
        printf("  %8d %10lld %9.4f  [%.4f, %.4f]\n", t[i].key, (long long)t[i].total,
               (double)t[i].right / (double)t[i].total, t[i].lo, t[i].hi);
}

static cJSON *tallies_json(const attamba_tally *t, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "key", t[i].key);
        cJSON_AddNumberToObject(o, "right", (double)t[i].right);
        cJSON_AddNumberToObject(o, "items", (double)t[i].total);
        cJSON_AddNumberToObject(o, "accuracy", (double)t[i].right / (double)t[i].total);
        cJSON_AddNumberToObject(o, "lo", t[i].lo);
        cJSON_AddNumberToObject(o, "hi", t[i].hi);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

/* eval --task: exact-match accuracy on a task file (attamba data), with 95% intervals, by group, by
 * the fact's offset in its chunk (attamba models) and by distance; --json adds a machine copy. */
static int eval_task(const model_opts *mo, const char *kind, const char *data, long batch, const char *json) {
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx, rc = 0;
    attamba_model *m;
    if (!open_model("eval", mo, ctxs, &n_ctx, &m)) return 1;
    attamba_task_report r;
    attamba_config_info info;
    attamba_config_cost cost;
    double t0 = cli_now();
    attamba_status st = attamba_model_score_task(m, data, kind, (int)batch, &r);
    if (st) {
        rc = cli_error("eval", "%s", attamba_context_last_error(ctxs[0]));
        if (st == ATTAMBA_ERR_INVALID_ARG) rc = 2; /* e.g. a file of the other task */
    } else {
        rc = model_describe(ctxs[0], m, r.example, &info, &cost);
    }
    int mqar = !strcmp(r.kind, "mqar");
    if (!rc) {
        char desc[96];
        printf("%s: %lld of %lld answers exact (greedy): accuracy %.4f, 95%% interval [%.4f, %.4f]  "
               "(%s; %lld examples of %d tokens in %.1f s)\n",
               r.kind, (long long)r.all.right, (long long)r.all.total, (double)r.all.right / (double)r.all.total,
               r.all.lo, r.all.hi, attention_desc(&info, desc, sizeof desc), (long long)r.examples, r.example,
               cli_now() - t0);
        if (r.tokens.total > r.all.total)
            printf("answer tokens right one by one: %lld of %lld (%.4f)\n", (long long)r.tokens.right,
                   (long long)r.tokens.total, (double)r.tokens.right / (double)r.tokens.total);
        print_tallies(mqar ? "by pairs in the example" : "by depth of the key (% of the filler)",
                      mqar ? "pairs" : "depth", r.group, r.n_group);
        print_tallies("by the fact's position in its chunk (model position mod P)", "offset", r.offset, r.n_offset);
        print_tallies("by distance from the fact to the answer (tokens, from)", "distance", r.distance, r.n_distance);
    }
    if (!rc && json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", r.kind);
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddStringToObject(o, "model", mo->model_dir);
        cJSON_AddStringToObject(o, "kind", info.kind);
        cJSON_AddNumberToObject(o, "chunk", info.chunk);
        cJSON_AddNumberToObject(o, "window", info.window);
        cJSON_AddStringToObject(o, "boundaries", info.boundaries);
        cJSON_AddNumberToObject(o, "kv_cache_bytes_per_layer", (double)cost.cache_bytes);
        cJSON_AddNumberToObject(o, "params", (double)info.parameters);
        cJSON_AddNumberToObject(o, "examples", (double)r.examples);
        cJSON_AddNumberToObject(o, "seq", r.example);
        cJSON_AddItemToObject(o, "all", tallies_json(&r.all, 1));
        cJSON_AddItemToObject(o, "tokens", tallies_json(&r.tokens, 1));
        cJSON_AddItemToObject(o, "by_group", tallies_json(r.group, r.n_group));
        cJSON_AddItemToObject(o, "by_offset", tallies_json(r.offset, r.n_offset));
        cJSON_AddItemToObject(o, "by_distance", tallies_json(r.distance, r.n_distance));
        char *text = cJSON_Print(o);
        size_t n = text ? strlen(text) : 0;
        char *line = text ? realloc(text, n + 2) : NULL; /* the file ends with a newline */
        if (line) {
            text = line;
            memcpy(text + n, "\n", 2);
        }
        rc = line ? cli_write_file("eval", json, text, n + 1) : cli_error("eval", "cannot write %s", json);
        free(text);
        cJSON_Delete(o);
    }
    close_model(ctxs, n_ctx, m);
    return rc;
}

/* The ids of text: its bytes for a byte model, else the model's tokenizer's ids, with the byte count of
 * each piece (*piece_bytes, [vocab]; NULL for bytes). Non-zero (said) on failure. */
static int text_tokens(attamba_context *ctx, attamba_model *m, int bytes_model, const char *text, size_t len,
                       int32_t **ids, int64_t *n, int32_t **piece_bytes) {
    *ids = malloc((len ? len : 1) * sizeof **ids); /* a piece is at least one byte */
    *piece_bytes = NULL;
    if (!*ids) return cli_error("eval", "out of host memory for %zu tokens", len);
    if (bytes_model) {
        for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
        *n = (int64_t)len;
        return 0;
    }
    const attamba_tokenizer *tk;
    int V = attamba_model_vocab_size(m);
    if (attamba_model_tokenizer(m, &tk) || attamba_tokenizer_encode(tk, text, len, 0, *ids, (int64_t)len, n))
        return cli_error("eval", "%s", attamba_context_last_error(ctx));
    if (!(*piece_bytes = malloc((size_t)V * sizeof **piece_bytes))) return cli_error("eval", "out of host memory");
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
            if (strcmp(optarg, "mqar") && strcmp(optarg, "passkey"))
                bad |= cli_error("eval", "--task: mqar or passkey, not '%s'", optarg);
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
    char *text = cli_read_file("eval", data, (size_t)max_tokens, &len); /* reads no more than --max-tokens */
    if (!text) return 1;
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx, rc = 0;
    attamba_model *m;
    if (!open_model("eval", &mo, ctxs, &n_ctx, &m)) { /* --split rows: a whole copy on every device */
        free(text);
        return 1;
    }
    attamba_config_info info;
    rc = model_describe(ctxs[0], m, 0, &info, NULL);
    /* the text as the model's tokens, and the bytes of each (a byte model: the bytes themselves) */
    int32_t *ids = NULL, *piece_bytes = NULL;
    int64_t n_ids = 0;
    if (!rc) rc = text_tokens(ctxs[0], m, !strcmp(info.tokenizer, "bytes"), text, len, &ids, &n_ids, &piece_bytes);
    int64_t per = seq - 1, windows = n_ids / per;
    if (!rc && windows < 1)
        rc = cli_error("eval", "%s has %lld tokens (%zu bytes), fewer than one window of %ld", data, (long long)n_ids,
                       len, per);
    int32_t *tok = malloc((size_t)batch * seq * sizeof *tok), *tgt = malloc((size_t)batch * seq * sizeof *tgt);
    double total = 0;
    int64_t counted = 0, bytes = 0;
    if (!rc && (!tok || !tgt)) rc = cli_error("eval", "out of host memory for --batch %ld x --seq %ld tokens", batch, seq);
    double t0 = cli_now();
    for (int64_t w0 = 0; w0 < windows && !rc; w0 += batch) {
        int B = (int)CLI_MIN((int64_t)batch, windows - w0);
        for (int b = 0; b < B; b++) {
            const int32_t *src = ids + (w0 + b) * per;
            tok[b * seq] = info.bos;
            for (int t = 0; t < per; t++) {
                tok[b * seq + t + 1] = src[t];
                tgt[b * seq + t] = src[t];
                bytes += piece_bytes ? piece_bytes[src[t]] : 1;
            }
            tgt[b * seq + per] = -1; /* the last position predicts beyond the window: not counted */
        }
        double sum;
        int64_t count;
        if (attamba_model_loss(m, tok, tgt, B, (int)seq, &sum, &count)) {
            rc = cli_error("eval", "%s", attamba_context_last_error(ctxs[0]));
        } else {
            total += sum;
            counted += count;
        }
        char suffix[96];
        snprintf(suffix, sizeof suffix, "loss %.4f  %.0f tokens/s", counted ? total / counted : 0.0,
                 (double)counted / (cli_now() - t0));
        cli_progress("eval", (double)(w0 + B) / (double)windows, w0 + B >= windows || rc, suffix);
    }
    if (!rc) { /* perplexity per token; bits per byte of the text the tokens cover (the same for a byte model) */
        double loss = total / (double)counted;
        char desc[96];
        printf("tokens %lld  bytes %lld  loss %.4f  perplexity %.3f  bits/byte %.4f  (%s%s)\n", (long long)counted,
               (long long)bytes, loss, exp(loss), total / log(2.0) / (double)bytes,
               attention_desc(&info, desc, sizeof desc), piece_bytes ? ", sentencepiece tokens" : "");
    }
    free(ids);
    free(piece_bytes);
    free(tok);
    free(tgt);
    free(text);
    close_model(ctxs, n_ctx, m);
    return rc;
}
