/* attamba bench train: training tokens/s (forward, backward, clipping, AdamW) of a preset on the
 * device, and with --torch the same model's training step in PyTorch (tools/reference/torch_twin.py) on this CPU,
 * measured in the same run, as a ratio. With --devices (several), data-parallel scaling: each
 * device alone and all together in interleaved rounds, the medians, and the efficiency. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"

typedef struct {
    attamba_context *ctx; /* the trainer's first device */
    attamba_trainer *t;
    const int32_t *tok, *tgt;
} step_arg;

static int one_step(void *p) {
    step_arg *a = p;
    return attamba_trainer_step(a->t, a->tok, a->tgt, NULL) || attamba_context_finish(a->ctx);
}

/* A model of cfg on ctxs[0] (seed 1) and its trainer over ctxs[0..n-1]. */
static attamba_status setup(attamba_context *const *ctxs, int n, const attamba_config *cfg,
                            const attamba_train_params *h, attamba_model **m, attamba_trainer **t) {
    *t = NULL;
    attamba_model_params mp = attamba_model_params_default();
    mp.devices = ctxs;
    mp.n_devices = 1;
    attamba_status s = attamba_model_create(cfg, &mp, 1, m);
    if (!s) s = attamba_trainer_create_parallel(*m, ctxs, n, h, t);
    return s;
}

/* A training step's FLOPs: six per non-embedding weight per token (forward, two backward GEMMs) and the
 * attention, forward (4 dh per key visit) and backward (10 dh); bytes: what a step must move at least,
 * each weight read forward and backward, its gradient written, and AdamW's 28 bytes per parameter. */
static void train_cost(const attamba_config *cfg, int B, int T, double *flop, double *bytes) {
    attamba_config_info info;
    attamba_config_cost cost;
    attamba_config_describe(cfg, &info);
    attamba_config_estimate(cfg, T, &cost);
    char *text = attamba_config_json(cfg);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    int tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "tie_embeddings"));
    cJSON_Delete(o);
    free(text);
    double params = (double)info.parameters;
    double nonemb = params - (tied ? 0 : (double)info.vocab_size * info.d_model);
    *flop = (double)B * T * (6.0 * nonemb + 3.5 * cost.attention_flops);
    *bytes = 40.0 * params;
}

static void device_label(const attamba_context *ctx, char *out, size_t size) {
    const attamba_device_info *d = attamba_context_device(ctx);
    snprintf(out, size, "%d:%d %s", d->platform_index, d->device_index, d->name);
}

/* Each device alone, then all together (configuration n), `rounds` interleaved rounds of `steps`
 * steps; prints and records the median tokens/s of each and the scaling. */
static int scaling(attamba_context *const *ctxs, int n, const char *name, const attamba_config *cfg,
                   const attamba_train_params *h, const int32_t *tok, const int32_t *tgt, int steps, cJSON *out) {
    enum { ROUNDS = 3 };
    attamba_model *m[ATTAMBA_MAX_DEVICES + 1] = {0};
    attamba_trainer *g[ATTAMBA_MAX_DEVICES + 1] = {0};
    step_arg a[ATTAMBA_MAX_DEVICES + 1];
    double rate[ATTAMBA_MAX_DEVICES + 1][ROUNDS];
    int rc = 0;
    for (int c = 0; c <= n && !rc; c++) {
        attamba_context *const *set = c < n ? &ctxs[c] : ctxs;
        const char *why = NULL;
        if (setup(set, c < n ? 1 : n, cfg, h, &m[c], &g[c])) why = attamba_context_last_error(set[0]);
        a[c] = (step_arg){set[0], g[c], tok, tgt};
        /* warm-up: compiles the kernels, and the second micro-batch calibrates the split */
        for (int w = 0; w < 3 && !why; w++)
            if (one_step(&a[c])) why = attamba_context_last_error(set[0]);
        if (why) rc = cli_error("bench train", "%s: %s", name, why);
    }
    for (int r = 0; r < ROUNDS && !rc; r++)
        for (int c = 0; c <= n && !rc; c++) {
            double sec = bench_time(one_step, &a[c], steps, 0.0, NULL);
            if (sec <= 0) rc = cli_error("bench train", "%s: %s", name, attamba_context_last_error(ctxs[c < n ? c : 0]));
            else rate[c][r] = h->batch * h->seq / sec;
        }
    double best = 0, sum = 0, med[ATTAMBA_MAX_DEVICES + 1];
    for (int c = 0; c <= n && !rc; c++) {
        for (int i = 1; i < ROUNDS; i++) /* sort the rounds: the median is the middle one */
            for (int k = i; k > 0 && rate[c][k] < rate[c][k - 1]; k--) {
                double t = rate[c][k];
                rate[c][k] = rate[c][k - 1], rate[c][k - 1] = t;
            }
        med[c] = rate[c][ROUNDS / 2];
        if (c < n) sum += med[c], best = med[c] > best ? med[c] : best;
    }
    for (int c = 0; c <= n && !rc; c++) {
        char label[200], split[600] = "";
        if (c < n) device_label(ctxs[c], label, sizeof label);
        else snprintf(label, sizeof label, "all %d together", n);
        if (c == n) attamba_trainer_split(g[c], split, sizeof split);
        printf("%-12s %-40.40s %12.0f", name, label, med[c]);
        if (c == n) printf("   %.2f of the sum, %.2fx the fastest alone\n%12s split: %s\n", med[c] / sum,
                           med[c] / best, "", split);
        else printf("\n");
        double flop, bytes, steps_per_s = med[c] / (h->batch * h->seq);
        train_cost(cfg, h->batch, h->seq, &flop, &bytes);
        bench_timing tm = {1.0 / steps_per_s, h->batch * h->seq / rate[c][ROUNDS - 1], ROUNDS};
        char shape[48], variant[320];
        snprintf(shape, sizeof shape, "B=%d T=%d", h->batch, h->seq);
        attamba_config_info info;
        attamba_config_describe(cfg, &info);
        snprintf(variant, sizeof variant, "%s %s: %s", name, info.kind, label);
        cJSON *o = bench_entry(c < n ? ctxs[c] : ctxs[0], "train", "train_step", shape, variant, &tm, flop, bytes);
        bench_entry_rate(o, med[c], "tokens/s");
        cJSON_AddStringToObject(o, "preset", name);
        cJSON_AddStringToObject(o, "devices", label);
        cJSON_AddNumberToObject(o, "batch", h->batch);
        cJSON_AddNumberToObject(o, "seq", h->seq);
        cJSON_AddNumberToObject(o, "tokens_per_s", med[c]);
        cJSON_AddNumberToObject(o, "rounds", ROUNDS);
        if (c == n) {
            cJSON_AddNumberToObject(o, "efficiency_vs_sum", med[c] / sum);
            cJSON_AddNumberToObject(o, "speedup_vs_fastest", med[c] / best);
            cJSON_AddStringToObject(o, "split", split);
        }
        cJSON_AddItemToArray(out, o);
    }
    for (int c = 0; c <= n; c++) {
        attamba_trainer_destroy(g[c]);
        attamba_model_destroy(m[c]);
    }
    return rc;
}

/* Runs the PyTorch twin's step timing (bench_train_torch.py); returns its tokens/s or 0. */
static double torch_rate(const char *script, const attamba_config *cfg, int B, int T, int steps) {
    char cfg_path[] = "/tmp/attamba-bench-train-XXXXXX";
    int fd = mkstemp(cfg_path);
    if (fd < 0) return 0;
    char *json = attamba_config_json(cfg);
    FILE *f = fdopen(fd, "w");
    if (f && json) fputs(json, f);
    if (f) fclose(f);
    free(json);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s --config %s --batch %d --seq %d --steps %d", script, cfg_path, B, T,
             steps);
    FILE *p = popen(cmd, "r");
    char line[512] = "";
    double rate = 0;
    if (p) {
        while (fgets(line, sizeof line, p)) {
            cJSON *o = cJSON_Parse(line);
            const cJSON *r = o ? cJSON_GetObjectItem(o, "tokens_per_s") : NULL;
            if (cJSON_IsNumber(r)) rate = r->valuedouble;
            cJSON_Delete(o);
        }
        pclose(p);
    }
    remove(cfg_path);
    return rate;
}

/* --profile: the kernels of the steps after the warm-up, per step, and zeroing + AdamW (issue 17 asks
 * for < 5% of a paper-60m step). Kernel times are device times, the step a wall-clock median. */
static void print_profile(const attamba_context *ctx, int64_t steps, double step_seconds) {
    attamba_context_profile_print(ctx, stdout, steps, step_seconds);
    const attamba_profile_entry *e;
    int n = 0;
    double zero = 0, adamw = 0;
    attamba_context_profile(ctx, &e, &n);
    for (int i = 0; i < n; i++) {
        if (!strcmp(e[i].name, "fill_u32")) zero += e[i].seconds;
        if (!strcmp(e[i].name, "adamw_step")) adamw += e[i].seconds;
    }
    printf("zeroing (fill_u32) %.1f ms + AdamW (adamw_step) %.1f ms per step: %.1f%% of the %.1f ms step "
           "(%lld steps profiled)\n",
           1e3 * zero / (double)steps, 1e3 * adamw / (double)steps,
           100.0 * (zero + adamw) / (double)steps / step_seconds, 1e3 * step_seconds, (long long)steps);
}

int bench_train_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"devices", required_argument, 0, 'D'},
                                         {"preset", required_argument, 0, 'p'},
                                         {"batch", required_argument, 0, 'b'},  {"seq", required_argument, 0, 'T'},
                                         {"steps", required_argument, 0, 's'},  {"kind", required_argument, 0, 'k'},
                                         {"torch", optional_argument, 0, 't'},  {"json", required_argument, 0, 'j'},
                                         {"profile", no_argument, 0, 'P'},      {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *devices = NULL, *presets = "tiny,small,paper-60m", *json = NULL, *torch = NULL, *kind = "attamba";
    int B = 4, T = 128, steps = 3, profile = 0, c;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:D:p:b:T:s:k:t::j:Ph", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 'D': devices = optarg; break;
        case 'p': presets = optarg; break;
        case 'k': kind = optarg; break;
        case 'b': if (!cli_number("bench train", "batch", optarg, 1, 4096, 1, &v)) return 2; B = (int)v; break;
        case 'T': if (!cli_number("bench train", "seq", optarg, 2, 1 << 20, 1, &v)) return 2; T = (int)v; break;
        case 's': if (!cli_number("bench train", "steps", optarg, 1, 1e6, 1, &v)) return 2; steps = (int)v; break;
        case 't': torch = optarg ? optarg : "tools/reference/bench_train_torch.py"; break;
        case 'j': json = optarg; break;
        case 'P': profile = 1; break;
        case 'h':
            printf("usage: attamba bench train [--preset tiny,small,paper-60m] [--kind attamba|transformer]\n"
                   "                           [--batch 4] [--seq 128] [--steps 3] [--torch[=SCRIPT]] [--json FILE|-]\n"
                   "                           [--device P:D | --devices all|gpu|cpu|P:D,P:D,...] [--profile]\n\n"
                   "Training tokens/s (forward + backward + clip + AdamW) per preset; with --torch also the same\n"
                   "model in PyTorch (tools/reference/torch_twin.py: vectorised SSD scan; needs python3-torch) on\n"
                   "this CPU in the same run, and the ratio.\n"
                   "With several --devices: each device alone and all together (data-parallel), medians of 3\n"
                   "interleaved rounds, the efficiency (together / sum alone) and the speedup over the fastest.\n"
                   "--profile (one device): after a warm-up step, each kernel's launches and device ms per step\n"
                   "and its share of the step, and the share of zeroing + AdamW.\n");
            return 0;
        default: return 2;
        }
    }
    if (profile) setenv("ATTAMBA_PROFILE", "1", 1); /* read when the context makes its queue */
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx = cli_open_devices(devices, device, ctxs);
    if (!n_ctx) return 1;
    attamba_context *ctx = ctxs[0];
    if (n_ctx > 1) {
        printf("%d devices, data-parallel; %s, batch %d x seq %d\n%-12s %-40s %12s\n", n_ctx, kind, B, T, "preset",
               "devices", "tok/s");
    } else {
        printf("device: %s; %s, batch %d x seq %d\n", attamba_context_device(ctx)->name, kind, B, T);
        printf("%-12s %12s %12s %14s %14s %10s %s\n", "preset", "params", "ms/step", "engine tok/s", "torch tok/s",
               "ratio", "launch/alloc/read per step");
    }
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    char *list = strdup(presets);
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name && !rc; name = strtok_r(NULL, ",", &save)) {
        attamba_config *cfg = NULL;
        char err[600];
        if (attamba_config_load(name, &cfg, err, sizeof err) ||
            (!strcmp(kind, "transformer") && attamba_config_set(cfg, "kind", "transformer", err, sizeof err))) {
            attamba_config_destroy(cfg);
            rc = cli_error("bench train", "%s", err);
            break;
        }
        attamba_config_info info;
        attamba_config_describe(cfg, &info);
        attamba_model *m = NULL;
        attamba_trainer *g = NULL;
        attamba_train_params h = attamba_train_params_default(1000);
        h.batch = B;
        h.seq = T;
        int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
        for (int i = 0; tok && tgt && i < B * T; i++) {
            tok[i] = (int32_t)((i * 7919) % info.vocab_size);
            tgt[i] = (int32_t)((i * 104729 + 1) % info.vocab_size);
        }
        if (!tok || !tgt) {
            rc = cli_error("bench train", "out of host memory");
        } else if (n_ctx > 1) {
            rc = scaling(ctxs, n_ctx, name, cfg, &h, tok, tgt, steps, out);
        } else if (setup(ctxs, 1, cfg, &h, &m, &g)) {
            rc = cli_error("bench train", "%s: %s", name, attamba_context_last_error(ctx));
        } else {
            step_arg a = {ctx, g, tok, tgt};
            if (profile && !one_step(&a)) attamba_context_profile_reset(ctx); /* the kernel builds and first touches */
            int64_t first = attamba_trainer_steps_done(g);
            bench_timing tm;
            double s = bench_time(one_step, &a, steps, 0.0, &tm);
            int failed = 0;
            attamba_counters per_step = bench_count(ctx, one_step, &a, &failed);
            double mine = s > 0 ? B * T / s : 0, theirs = torch ? torch_rate(torch, cfg, B, T, steps) : 0;
            char tb[32] = "-", rb[32] = "-";
            if (theirs > 0) {
                snprintf(tb, sizeof tb, "%.0f", theirs);
                snprintf(rb, sizeof rb, "%.2fx", mine / theirs);
            }
            printf("%-12s %12lld %12.1f %14.0f %14s %10s %8llu/%llu/%llu\n", name,
                   (long long)info.parameters, s * 1e3, mine, tb, rb,
                   (unsigned long long)per_step.launches, (unsigned long long)per_step.allocations,
                   (unsigned long long)per_step.blocking_reads);
            if (profile && s > 0) print_profile(ctx, attamba_trainer_steps_done(g) - first, s);
            fflush(stdout);
            double flop, bytes;
            train_cost(cfg, B, T, &flop, &bytes);
            char shape[48], variant[64];
            snprintf(shape, sizeof shape, "B=%d T=%d", B, T);
            snprintf(variant, sizeof variant, "%s %s", name, info.kind);
            cJSON *o = bench_entry(ctx, "train", "train_step", shape, variant, &tm, flop, bytes);
            bench_entry_rate(o, mine, "tokens/s");
            cJSON_AddStringToObject(o, "preset", name);
            cJSON_AddStringToObject(o, "kind", info.kind);
            cJSON_AddNumberToObject(o, "batch", B);
            cJSON_AddNumberToObject(o, "seq", T);
            if (!failed) bench_entry_counters(o, &per_step, 1);
            if (theirs > 0) {
                cJSON_AddNumberToObject(o, "torch_tokens_per_s", theirs);
                cJSON_AddNumberToObject(o, "ratio_to_torch", mine / theirs);
            }
            cJSON_AddItemToArray(out, o);
        }
        attamba_trainer_destroy(g);
        attamba_model_destroy(m);
        attamba_config_destroy(cfg);
        free(tok);
        free(tgt);
    }
    free(list);
    if (attamba_context_profile(ctx, NULL, NULL) && !profile) attamba_context_profile_print(ctx, stdout, 0, 0);
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench train", "cannot write %s", json);
    cJSON_Delete(out);
    cli_close_devices(ctxs, n_ctx);
    return rc;
}
