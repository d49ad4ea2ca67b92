/* attamba train: train a model (or resume) on a text, token or task file. */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int num_opt(const char *name, const char *arg, double lo, double hi, double *out) {
    return cli_number("train", name, arg, lo, hi, 0, out);
}

/* The config of a new run: a preset name or a config file, then the command line's overrides (--kind,
 * --chunk, --window, --boundaries), each checked with the whole config. Returns 0, or the exit code
 * (said). */
static int make_config(const char *spec, const char *kind, double chunk, double window, const char *boundaries,
                       attamba_config **out) {
    static const char *const kinds[] = {"attamba", "transformer", "transformer-swa"};
    char err[600];
    if (kind) {
        int known = 0;
        for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) known |= !strcmp(kind, kinds[i]);
        if (!known) return cli_error("train", "unknown --kind '%s'", kind), 2;
    }
    if (boundaries && strcmp(boundaries, "uniform") && strcmp(boundaries, "cyclic") && strcmp(boundaries, "random")) {
        const char *seed = !strncmp(boundaries, "random:", 7) ? boundaries + 7 : NULL;
        if (!seed) return cli_error("train", "unknown boundary strategy '%s' (uniform, cyclic, random or random:SEED)",
                                    boundaries);
        if (!*seed || strspn(seed, "0123456789") != strlen(seed))
            return cli_error("train", "bad boundary seed in '%s'", boundaries);
    }
    attamba_config *c;
    if (attamba_config_load(spec, &c, err, sizeof err)) return cli_error("train", "%s", err);
    char *keep = NULL; /* plain "random" keeps the config's seed */
    if (boundaries && !strcmp(boundaries, "random")) {
        char *json = attamba_config_json(c);
        cJSON *root = json ? cJSON_Parse(json) : NULL;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "boundaries");
        if (cJSON_IsString(b) && !strncmp(b->valuestring, "random:", 7)) keep = strdup(b->valuestring);
        cJSON_Delete(root);
        free(json);
    }
    /* the overrides at once: one at a time could pass through an invalid config (a kind whose window
     * the next option sets) */
    cJSON *o = cJSON_CreateObject();
    if (kind) cJSON_AddStringToObject(o, "kind", kind);
    if (chunk > 0) cJSON_AddNumberToObject(o, "chunk", (int)chunk);
    if (window >= 0) cJSON_AddNumberToObject(o, "window", (int)window);
    if (boundaries) cJSON_AddStringToObject(o, "boundaries", keep ? keep : boundaries);
    char *fields = cJSON_PrintUnformatted(o);
    attamba_status s = fields ? attamba_config_set(c, NULL, fields, err, sizeof err) : ATTAMBA_ERR_OUT_OF_MEMORY;
    if (!fields) snprintf(err, sizeof err, "out of host memory");
    free(fields);
    cJSON_Delete(o);
    free(keep);
    if (s) {
        attamba_config_destroy(c);
        return cli_error("train", "%s", err);
    }
    *out = c;
    return 0;
}

int cli_train(int argc, char **argv) {
    enum { O_CONFIG = 1000, O_PRESET, O_DATA, O_STEPS, O_OUT, O_RESUME, O_BATCH, O_SEQ, O_ACCUM, O_LR, O_MIN_LR,
           O_WARMUP, O_WD, O_CLIP, O_SEED, O_VAL_EVERY, O_VAL_WINDOWS, O_VAL_FRAC, O_CKPT, O_DEVICE, O_CHUNK, O_WINDOW,
           O_KIND, O_BOUNDARIES, O_DEVICES };
    static const struct option opts[] = {
        {"config", required_argument, 0, O_CONFIG},   {"preset", required_argument, 0, O_PRESET},
        {"data", required_argument, 0, O_DATA},       {"steps", required_argument, 0, O_STEPS},
        {"out", required_argument, 0, O_OUT},         {"resume", no_argument, 0, O_RESUME},
        {"batch", required_argument, 0, O_BATCH},     {"seq", required_argument, 0, O_SEQ},
        {"accum", required_argument, 0, O_ACCUM},     {"lr", required_argument, 0, O_LR},
        {"min-lr", required_argument, 0, O_MIN_LR},   {"warmup", required_argument, 0, O_WARMUP},
        {"weight-decay", required_argument, 0, O_WD}, {"clip", required_argument, 0, O_CLIP},
        {"seed", required_argument, 0, O_SEED},       {"val-every", required_argument, 0, O_VAL_EVERY},
        {"val-windows", required_argument, 0, O_VAL_WINDOWS}, {"val-frac", required_argument, 0, O_VAL_FRAC},
        {"ckpt-every", required_argument, 0, O_CKPT}, {"device", required_argument, 0, O_DEVICE},
        {"devices", required_argument, 0, O_DEVICES},
        {"kind", required_argument, 0, O_KIND},       {"chunk", required_argument, 0, O_CHUNK},
        {"window", required_argument, 0, O_WINDOW},   {"boundaries", required_argument, 0, O_BOUNDARIES},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *config = NULL, *preset = NULL, *device = NULL, *devices = NULL, *kind = NULL, *boundaries = NULL;
    attamba_train_run_params o = attamba_train_run_params_default(0);
    o.stop = &stop_requested;
    attamba_train_params *h = &o.train;
    double v = 0, steps = 0, warmup = -1, chunk = 0, window = -1;
    int c, ok = 1;
    optind = 1;
    while (ok && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_CONFIG: config = optarg; break;
        case O_PRESET: preset = optarg; break;
        case O_DATA: o.data = optarg; break;
        case O_OUT: o.out = optarg; break;
        case O_RESUME: o.resume = 1; break;
        case O_DEVICE: device = optarg; break;
        case O_DEVICES: devices = optarg; break;
        case O_KIND: kind = optarg; break;
        case O_BOUNDARIES: boundaries = optarg; break;
        case O_STEPS: ok = num_opt("steps", optarg, 1, 1e12, &steps); break;
        case O_BATCH: ok = num_opt("batch", optarg, 1, 1 << 20, &v); h->batch = (int)v; break;
        case O_SEQ: ok = num_opt("seq", optarg, 2, 1 << 20, &v); h->seq = (int)v; break;
        case O_ACCUM: ok = num_opt("accum", optarg, 1, 1 << 20, &v); h->accum = (int)v; break;
        case O_LR: ok = num_opt("lr", optarg, 1e-9, 10, &v); h->lr = (float)v; break;
        case O_MIN_LR: ok = num_opt("min-lr", optarg, 0, 10, &v); h->min_lr = (float)v; break;
        case O_WARMUP: ok = num_opt("warmup", optarg, 0, 1e12, &warmup); break;
        case O_WD: ok = num_opt("weight-decay", optarg, 0, 10, &v); h->weight_decay = (float)v; break;
        case O_CLIP: ok = num_opt("clip", optarg, 0, 1e9, &v); h->clip = (float)v; break;
        case O_SEED: ok = num_opt("seed", optarg, 0, 1e18, &v); o.seed = (uint64_t)v; break;
        case O_VAL_EVERY: ok = num_opt("val-every", optarg, 0, 1e12, &v); o.val_every = (int64_t)v; break;
        case O_VAL_WINDOWS: ok = num_opt("val-windows", optarg, 1, 1e9, &v); o.val_windows = (int)v; break;
        case O_VAL_FRAC: ok = num_opt("val-frac", optarg, 0, 0.9, &o.val_frac); break;
        case O_CKPT: ok = num_opt("ckpt-every", optarg, 0, 1e12, &v); o.ckpt_every = (int64_t)v; break;
        case O_CHUNK: ok = num_opt("chunk", optarg, 1, 1e6, &chunk); break;
        case O_WINDOW: ok = num_opt("window", optarg, 0, 1e6, &window); break;
        case 'h':
            printf("usage: attamba train (--config C.json | --preset tiny|small|paper-60m) --data FILE --steps N\n"
                   "                     --out DIR [options]\n"
                   "       attamba train --resume --out DIR --data FILE [--steps N]\n\n"
                   "  --kind K             attamba | transformer | transformer-swa (overrides the config)\n"
                   "  --chunk P --window L --boundaries S     attention pattern (override the config)\n"
                   "  --batch B --seq T    micro-batch (default 8 x 256); --accum K micro-batches per step\n"
                   "  --lr --min-lr --warmup --weight-decay --clip   AdamW + schedule (defaults: 3e-3, 3e-4,\n"
                   "                       5%% of steps, 0.033, 1.0; betas 0.9/0.95 as in the paper)\n"
                   "  --seed S             init and data order (same seed + device = same run)\n"
                   "  --val-frac F         held-out tail of the data (0.05); --val-every K, --val-windows N\n"
                   "  --ckpt-every K       checkpoint period (also at the end and on Ctrl-C)\n"
                   "  --device P:D|gpu|cpu|accelerator   one device\n"
                   "  --devices all|gpu|cpu|P:D,P:D,...  data-parallel over several (also $ATTAMBA_DEVICES):\n"
                   "                       each micro-batch's rows split by measured speed (docs/multi-device.md)\n\n"
                   "FILE: text (bytes), a token file (attamba tokenize) or a task file (attamba data: every window\n"
                   "is one example, --seq its length, and only the answers are scored). A model with a SentencePiece\n"
                   "tokenizer (attamba init --tokenizer) trains on a token file of `attamba tokenize --tokenizer`.\n"
                   "Writes DIR/metrics.jsonl, DIR/ckpt-*/ (the newest two; DIR/latest names the newest) and the\n"
                   "final model in DIR (config.json + model.safetensors).\n");
            return 0;
        default: return 2;
        }
    }
    if (!ok) return 2;
    if (!o.data || !o.out) return cli_error("train", "--data and --out are required"), 2;
    if (!o.resume && !config == !preset) return cli_error("train", "give --config or --preset (or --resume)"), 2;
    if (!o.resume && steps < 1) return cli_error("train", "--steps N is required"), 2;
    char err[600];
    if (o.resume && !config && !preset && !attamba_checkpoint_exists(o.out))
        return cli_error("train", "--resume: no checkpoint in %s (give --config or --preset to start a run)", o.out), 2;
    attamba_config *cfg = NULL;
    if (!o.resume || config || preset) {
        int rc = make_config(config ? config : preset, kind, chunk, window, boundaries, &cfg);
        if (rc) return rc;
    }
    h->steps = (int64_t)steps;
    h->warmup = warmup >= 0 ? (int64_t)warmup : (h->steps / 20 > 0 ? h->steps / 20 : 1);
    attamba_comm comm;
    if (cli_mpi_begin(&comm)) return attamba_config_destroy(cfg), 1;
    o.comm = &comm;
    o.progress = comm.rank == 0;
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx = cli_open_devices(devices, device, ctxs);
    if (!n_ctx) return attamba_config_destroy(cfg), cli_mpi_end(&comm, 1), 1;
    attamba_context *ctx = ctxs[0];
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint); /* what mpirun (on Ctrl-C) and batch schedulers (at the time limit) send */
    for (int i = 0; i < n_ctx; i++) {
        const attamba_device_info *d = attamba_context_device(ctxs[i]);
        char rank[32] = ""; /* one write per line: the ranks share the terminal */
        if (comm.size > 1) snprintf(rank, sizeof rank, "rank %d/%d ", comm.rank, comm.size);
        fprintf(stderr, "%sdevice %d:%d: %s\n", rank, d->platform_index, d->device_index, d->name);
    }
    double val;
    attamba_status s = attamba_train_run(ctxs, n_ctx, cfg, &o, &val);
    attamba_config_destroy(cfg);
    int rc = 0;
    if (s == ATTAMBA_ERR_INTERRUPTED) {
        rc = 130;
        if (comm.rank == 0) cli_error("train", "%s", attamba_context_last_error(ctx));
    } else if (s) {
        rc = comm.size > 1 ? cli_error("train", "rank %d: %s", comm.rank, attamba_context_last_error(ctx))
                           : cli_error("train", "%s", attamba_context_last_error(ctx));
    } else if (comm.rank == 0) {
        attamba_config *trained; /* the trained model's, also after --resume */
        int bytes = !attamba_config_load(o.out, &trained, err, sizeof err);
        if (bytes) {
            attamba_config_info info;
            attamba_config_describe(trained, &info);
            bytes = !strcmp(info.tokenizer, "bytes");
            attamba_config_destroy(trained);
        }
        if (bytes)
            printf("trained %s: validation loss %.4f, perplexity %.3f, bits/byte %.4f\n", o.out, val, exp(val),
                   val / log(2.0));
        else
            printf("trained %s: validation loss %.4f, perplexity %.3f per token (attamba eval: bits per byte)\n",
                   o.out, val, exp(val));
    }
    cli_close_devices(ctxs, n_ctx);
    cli_mpi_end(&comm, rc && rc != 130 ? rc : 0);
    return rc;
}

/* attamba tokenize: a text file as a binary token file (u16 ids: bytes, or a SentencePiece model's
 * pieces), which `train` maps instead of reading: worth it for corpora that do not fit in memory
 * comfortably, and the way SentencePiece models get their data. */
static int tokenize_with(const char *spm, const char *in, const char *out) {
    char err[1024];
    attamba_tokenizer *t = NULL;
    if (attamba_tokenizer_load(spm, &t, err, sizeof err)) return cli_error("tokenize", "%s", err);
    int vocab = attamba_tokenizer_vocab_size(t);
    if (vocab > 65535) {
        cli_error("tokenize", "%s has %d pieces: token files hold u16 ids, at most 65535", spm, vocab);
        attamba_tokenizer_destroy(t);
        return 1;
    }
    int64_t n = 0, len = 0;
    int rc = 0;
    if (attamba_tokenize_file(t, in, out, &n, &len, err, sizeof err)) rc = cli_error("tokenize", "%s", err);
    else
        printf("wrote %s: %lld tokens of %s (vocab %d) from %lld bytes, %.4f tokens per byte\n", out, (long long)n,
               spm, vocab, (long long)len, (double)n / (double)(len ? len : 1));
    attamba_tokenizer_destroy(t);
    return rc;
}

int cli_tokenize(int argc, char **argv) {
    static const struct option opts[] = {{"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
                                         {"tokenizer", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL, *spm = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:t:h", opts, NULL)) != -1) {
        if (c == 'd') in = optarg;
        else if (c == 'o') out = optarg;
        else if (c == 't') spm = optarg;
        else if (c == 'h') {
            printf("usage: attamba tokenize --data TEXT --out FILE.tok [--tokenizer FILE.model]\n\nWrites the "
                   "tokens of TEXT as a binary token file (\"ATBTOK01\", u64 count, u16 ids) for `attamba train\n"
                   "--data`: its bytes, or with --tokenizer the ids of a SentencePiece model (`attamba tokenizer\n"
                   "train`; at most 65535 pieces), the data of a model made with `attamba init --tokenizer`.\n");
            return 0;
        } else return 2;
    }
    if (!in || !out) return cli_error("tokenize", "--data and --out are required"), 2;
    if (spm) return tokenize_with(spm, in, out);
    char err[1024];
    int64_t n = 0;
    if (attamba_tokenize_file(NULL, in, out, &n, NULL, err, sizeof err)) return cli_error("tokenize", "%s", err);
    printf("wrote %s: %lld tokens\n", out, (long long)n);
    return 0;
}
