/* attamba demo: the README's main job. On the default device: train a small Attamba model and a
 * transformer of the same width on the bundled corpus with the same budget, then compare them:
 * validation perplexity at the trained and at test-time P and L, KV-cache bytes at 4K and 32K
 * context, decode tokens/s at a long context; and generate a sample. Every number is measured in
 * this run. */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static volatile sig_atomic_t demo_stop;
static void demo_sigint(int sig) {
    (void)sig;
    demo_stop = 1;
}

/* Decode tokens/s of m (on ctx) at context T (the cache filled synthetically to T:
 * attamba_session_fill_synthetic). */
static double decode_rate(attamba_context *ctx, attamba_model *m, int64_t T, int steps) {
    attamba_session *c = NULL;
    if (attamba_session_create(m, T + steps + 3, &c)) return 0;
    double rate = 0;
    if (!attamba_session_fill_synthetic(c, T)) {
        int32_t tok = 'a';
        int ok = 1;
        for (int i = 0; i < 2 && ok; i++) /* warm up: kernel builds, first allocations */
            ok = attamba_session_step(c, &tok, NULL) == ATTAMBA_OK;
        ok = ok && attamba_context_finish(ctx) == ATTAMBA_OK;
        double t0 = cli_now();
        for (int i = 0; i < steps && ok; i++) ok = attamba_session_step(c, &tok, NULL) == ATTAMBA_OK;
        ok = ok && attamba_context_finish(ctx) == ATTAMBA_OK;
        if (ok) rate = steps / (cli_now() - t0);
    }
    attamba_session_destroy(c);
    return rate;
}

/* Builds (or loads from the cache) every kernel training and validating cfg at h's shape needs, by
 * one untimed step on a throwaway model, so that the timed runs are warm; returns its seconds (< 0 on
 * failure, said on stderr). */
static double warm_kernels(attamba_context *ctx, const char *name, const attamba_config *cfg,
                           const attamba_train_params *h) {
    double t0 = cli_now();
    attamba_model *m = NULL;
    attamba_trainer *t = NULL;
    attamba_model_params mp = attamba_model_params_default();
    mp.devices = &ctx;
    mp.n_devices = 1;
    int64_t n = (int64_t)h->batch * h->seq;
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    double sum;
    int64_t count;
    attamba_status s = tok ? ATTAMBA_OK : ATTAMBA_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; tok && i < n; i++) tok[i] = (int32_t)(i % 256);
    if (!s) s = attamba_model_create(cfg, &mp, 1, &m);
    if (!s) s = attamba_trainer_create(m, h, &t);
    if (!s) s = attamba_trainer_step(t, tok, tok, NULL);
    if (!s) s = attamba_model_loss(m, tok, tok, h->batch, h->seq, &sum, &count); /* validation's forward */
    if (s) cli_error("demo", "building the kernels of %s: %s", name, tok ? attamba_context_last_error(ctx)
                                                                          : "out of host memory");
    attamba_trainer_destroy(t);
    attamba_model_destroy(m);
    free(tok);
    return s ? -1 : cli_now() - t0;
}

static int train_one(attamba_context *ctx, const char *name, const attamba_config *cfg, const attamba_train_params *h,
                     const char *data, const char *dir, uint64_t seed, double *seconds) {
    attamba_train_run_params o = attamba_train_run_params_default(h->steps);
    attamba_config_info info;
    attamba_config_describe(cfg, &info);
    o.train = *h;
    o.data = data, o.val_frac = 0.05, o.out = dir, o.seed = seed, o.val_windows = 16, o.progress = 1;
    o.stop = &demo_stop;
    printf("\n== training %s: %lld parameters, %lld steps of %d x %d tokens\n", name, (long long)info.parameters,
           (long long)h->steps, h->batch, h->seq);
    fflush(stdout);
    double t0 = cli_now();
    attamba_status s = attamba_train_run(&ctx, 1, cfg, &o, NULL);
    *seconds = cli_now() - t0;
    if (s) return cli_error("demo", "training %s: %s", name, attamba_context_last_error(ctx));
    return 0;
}

/* KV-cache bytes of m's config in force (its test-time P and L) at `context` tokens. */
static long long cache_bytes(attamba_model *m, int64_t context) {
    attamba_config *c = NULL;
    attamba_config_cost cost = {0};
    if (attamba_model_get_config(m, &c)) return -1;
    attamba_config_estimate(c, context, &cost);
    attamba_config_destroy(c);
    return (long long)cost.cache_bytes;
}

int cli_demo(int argc, char **argv) {
    static const struct option opts[] = {{"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
                                         {"steps", required_argument, 0, 's'}, {"device", required_argument, 0, 'D'},
                                         {"seed", required_argument, 0, 'S'}, {"prompt", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    const char *data = "build/corpus/kjv.txt", *out = "build/demo", *device = NULL, *prompt = "And God said";
    double steps = 300, seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:s:D:S:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 's': if (!cli_number("demo", "steps", optarg, 1, 1e9, 1, &steps)) return 2; break;
        case 'D': device = optarg; break;
        case 'S': if (!cli_number("demo", "seed", optarg, 0, 2147483647.0, 1, &seed)) return 2; break;
        case 'p': prompt = optarg; break;
        case 'h':
            printf("usage: attamba demo [--data FILE] [--out DIR] [--steps N] [--seed S] [--prompt TEXT]\n"
                   "                    [--device P:D]\n\n"
                   "Trains the `small` Attamba model (P=8, L=8) and a transformer of the same width on FILE (default\n"
                   "build/corpus/kjv.txt, made by scripts/corpus.sh) with the same budget (default 300 steps of\n"
                   "8 x 128 tokens), then prints their validation perplexity (Attamba also at test-time P and L),\n"
                   "KV-cache bytes at 4K and 32K context, decode tokens/s at 16K context, and a sample.\n");
            return 0;
        default: return 2;
        }
    }
    attamba_context *ctx = cli_open_device(device);
    if (!ctx) return 1;
    const attamba_device_info *di = attamba_context_device(ctx);
    printf("device %d:%d: %s (%s), %u compute units\n", di->platform_index, di->device_index, di->name,
           di->platform_name, di->compute_units);
    signal(SIGINT, demo_sigint);
    attamba_config *att = NULL, *tra = NULL;
    char err[600];
    int rc = 0;
    if (attamba_config_load("small", &att, err, sizeof err) || attamba_config_load("small", &tra, err, sizeof err) ||
        attamba_config_set(tra, "kind", "transformer", err, sizeof err))
        rc = cli_error("demo", "%s", err);
    attamba_train_params h = attamba_train_params_default((int64_t)steps);
    h.batch = 8;
    h.seq = 128;
    char dir_a[4096], dir_t[4096];
    snprintf(dir_a, sizeof dir_a, "%s/attamba", out);
    snprintf(dir_t, sizeof dir_t, "%s/transformer", out);
    double secs_a = 0, secs_t = 0;
    /* kernels first, so that neither training is charged for them */
    attamba_cache_stats before, after;
    attamba_context_cache_stats(ctx, &before);
    double build_a = rc ? -1 : warm_kernels(ctx, "Attamba", att, &h);
    double build_t = build_a < 0 ? -1 : warm_kernels(ctx, "the transformer", tra, &h);
    rc = build_a < 0 || build_t < 0;
    attamba_context_cache_stats(ctx, &after);
    if (!rc)
        printf("\n== kernels built or loaded before the clock: %.1f s for Attamba, %.1f s more for the transformer "
               "(%u programs compiled, %u from the cache)\n",
               build_a, build_t, (unsigned)(after.misses - before.misses),
               (unsigned)(after.hits + after.prebuilt - before.hits - before.prebuilt));
    if (!rc) rc = train_one(ctx, "Attamba (P=8, L=8)", att, &h, data, dir_a, (uint64_t)seed, &secs_a);
    if (!rc) rc = train_one(ctx, "transformer (same width)", tra, &h, data, dir_t, (uint64_t)seed, &secs_t);
    attamba_model *ma = NULL, *mt = NULL;
    if (!rc && (attamba_model_load(ctx, dir_a, &ma) || attamba_model_load(ctx, dir_t, &mt)))
        rc = cli_error("demo", "%s", attamba_context_last_error(ctx));
    if (!rc) {
        int windows = 48, T = h.seq;
        printf("\n== validation (%d windows of %d bytes from the held-out 5%%), cache and decode speed\n", windows, T);
        printf("%-38s %9s %9s %14s %14s %12s\n", "model", "val ppl", "bits/byte", "cache @4K", "cache @32K",
               "decode tok/s");
        struct { const char *label; attamba_model *m; int chunk, window; } rows[] = {
            {"transformer (full attention)", mt, -1, -1},
            {"Attamba P=8 L=8 (as trained)", ma, 8, 8},
            {"Attamba at test time: P=4 L=8", ma, 4, 8},
            {"Attamba at test time: P=16 L=8", ma, 16, 8},
            {"Attamba at test time: P=8 L=32", ma, 8, 32},
            {"Attamba at test time: P=8 L=2", ma, 8, 2},
            {"Attamba at test time: P=1 (every key)", ma, 1, 8},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0] && !rc; i++) {
            attamba_model *m = rows[i].m;
            if (rows[i].chunk > 0 && attamba_model_set_attention(m, rows[i].chunk, rows[i].window, NULL)) {
                rc = cli_error("demo", "%s", attamba_context_last_error(ctx));
                break;
            }
            double loss;
            if (attamba_model_validate(m, data, 0.05, T, 8, windows, &loss)) {
                rc = cli_error("demo", "%s", attamba_context_last_error(ctx));
                break;
            }
            double rate = decode_rate(ctx, m, 16384, 16);
            printf("%-38s %9.3f %9.4f %14lld %14lld %12.1f\n", rows[i].label, exp(loss), loss / log(2.0),
                   cache_bytes(m, 4096), cache_bytes(m, 32768), rate);
            fflush(stdout);
        }
        if (!rc) attamba_model_set_attention(ma, 8, 8, NULL);
        printf("(training took %.0f s for Attamba, %.0f s for the transformer, kernels already built; decode measured\n"
               "at 16K context)\n",
               secs_a, secs_t);
    }
    if (!rc) { /* a sample from the trained Attamba model */
        printf("\n== sample (Attamba, temperature 0.8, seed %.0f)\n", seed);
        fflush(stdout);
        char *gargv[] = {"generate", "--model", dir_a, "--prompt", (char *)prompt, "-n", "300", "--temperature", "0.8",
                         "--seed", "1", NULL};
        if (device) { /* keep the device the demo ran on */
            setenv("ATTAMBA_DEVICE", device, 1);
        }
        rc = cli_generate(11, gargv);
    }
    attamba_model_destroy(ma);
    attamba_model_destroy(mt);
    attamba_config_destroy(att);
    attamba_config_destroy(tra);
    attamba_context_destroy(ctx);
    return rc;
}
