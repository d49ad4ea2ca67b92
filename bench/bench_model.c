/* attamba bench decode: prefill and decode throughput of Attamba (P = 4, 8, 16) against the
 * full-attention and sliding-window transformers of the same width, against context length, with
 * KV-cache bytes and peak device memory; measured in one run. Writes a table, JSON and an SVG plot.
 *
 * Decode at context T is timed after filling the cache to T synthetically (attamba_session_fill_synthetic):
 * a decode step's cost depends on how many rows it reads, not on their values, and prefilling 32K tokens
 * per model would take far longer than the measurement; the timed steps then run at T, T + 1, ...
 * A prefill is a session's first feed: the logits of the last token come back, as in generate. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"

typedef struct {
    char name[48];
    const char *kind;
    int chunk, window;
    const char *weights;
    attamba_cache_type cache; /* the stored keys and values */
} variant;

typedef struct {
    attamba_context *ctx;
    attamba_session *s;
    int32_t token;
    float *logits;                /* [V] on the host */
    attamba_counters per_token;   /* what the last step asked of the device, logits read included */
} step_arg;

/* One decode step and the read of its logits (what generation does before sampling). */
static int one_step(void *p) {
    step_arg *a = p;
    attamba_counters c0, c1;
    attamba_context_counters(a->ctx, &c0);
    int rc = attamba_session_feed(a->s, &a->token, 1, a->logits) != ATTAMBA_OK;
    attamba_context_counters(a->ctx, &c1);
    a->per_token = (attamba_counters){c1.launches - c0.launches, c1.allocations - c0.allocations,
                                      c1.uploads - c0.uploads, c1.copies - c0.copies,
                                      c1.blocking_reads - c0.blocking_reads};
    return rc;
}

typedef struct {
    attamba_model *m;
    int32_t *tokens;
    int T;
    float *logits;
} prefill_arg;

/* A prompt's prefill as generation runs it: the logits of its last token come back. */
static int one_prefill(void *p) {
    prefill_arg *a = p;
    attamba_session *s = NULL;
    int rc = attamba_session_create(a->m, a->T + 1, &s) || attamba_session_feed(s, a->tokens, a->T, a->logits);
    attamba_session_destroy(s);
    return rc;
}

static void write_svg(const char *path, const variant *vs, int nv, const int64_t *ctxs, int nc, double *tps) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    const int W = 640, H = 400, L = 70, R = 160, T = 30, B = 50;
    double ymax = 0;
    for (int i = 0; i < nv * nc; i++) ymax = fmax(ymax, tps[i]);
    ymax = ymax > 0 ? pow(10, ceil(log10(ymax))) : 1;
    double ymin = ymax / 1000;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='12'>\n", W, H);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
    fprintf(f, "<text x='%d' y='18' font-size='14'>decode tokens/s vs context (log-log)</text>\n", L);
#define X(i) (L + (double)(i) * (W - L - R) / (nc > 1 ? nc - 1 : 1))
#define Y(v) (T + (H - T - B) * (1 - (log10(fmax(v, ymin)) - log10(ymin)) / (log10(ymax) - log10(ymin))))
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, H - B, W - R, H - B);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, T, L, H - B);
    for (int i = 0; i < nc; i++)
        fprintf(f, "<text x='%.0f' y='%d' text-anchor='middle'>%lldK</text>\n", X(i), H - B + 18, (long long)ctxs[i] / 1024);
    for (double v = ymin; v <= ymax * 1.01; v *= 10)
        fprintf(f, "<text x='%d' y='%.0f' text-anchor='end'>%g</text><line x1='%d' x2='%d' y1='%.0f' y2='%.0f' stroke='#ddd'/>\n",
                L - 6, Y(v) + 4, v, L, W - R, Y(v), Y(v));
    static const char *colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"};
    for (int j = 0; j < nv; j++) {
        fprintf(f, "<polyline fill='none' stroke-width='2' stroke='%s' points='", colors[j % 7]);
        for (int i = 0; i < nc; i++)
            if (tps[j * nc + i] > 0) fprintf(f, "%.1f,%.1f ", X(i), Y(tps[j * nc + i]));
        fprintf(f, "'/>\n<text x='%d' y='%d' fill='%s'>%s</text>\n", W - R + 10, T + 16 * (j + 1), colors[j % 7], vs[j].name);
    }
    fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>context (tokens)</text>\n", (L + W - R) / 2, H - 12);
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    fclose(f);
}

/* Decode tokens/s of m (as variant v, its cache type) at context T (the cache filled synthetically to T,
 * then `steps` timed steps, the i-th at context T + i, after one untimed); 0 when it cannot run (said on
 * stderr). sa gets the last step's counters, *bytes (may be NULL) what the cache holds at T. A profiling
 * context (ATTAMBA_PROFILE=1) then runs `steps` more and prints their kernels and idle time per step. */
static double decode_rate(attamba_context *ctx, attamba_model *m, const variant *v, int64_t T, int steps,
                          step_arg *sa, int64_t *bytes, bench_timing *tm) {
    attamba_session *s = NULL;
    attamba_session_params p = attamba_session_params_default(T + 2 * (int64_t)steps + 2);
    const char *name = v->name;
    p.cache_type = v->cache;
    memset(sa, 0, sizeof *sa);
    if (attamba_session_create_with(m, &p, &s) || attamba_session_fill_synthetic(s, T)) {
        fprintf(stderr, "attamba bench decode: %s at %lld: %s\n", name, (long long)T, attamba_context_last_error(ctx));
        attamba_session_destroy(s);
        return 0;
    }
    if (bytes) *bytes = attamba_session_cache_bytes(s, 0);
    float *host_logits = malloc((size_t)attamba_model_vocab_size(m) * sizeof *host_logits);
    *sa = (step_arg){ctx, s, 65, host_logits, {0}};
    double t = host_logits ? bench_time(one_step, sa, steps, 0.0, tm) : -1;
    if (t > 0 && attamba_context_profile(ctx, NULL, NULL)) {
        attamba_context_profile_reset(ctx);
        double t0 = cli_now();
        int failed = 0;
        for (int i = 0; i < steps && !failed; i++) failed = one_step(sa);
        if (!failed) {
            printf("\n%s at %lld, per step of %d:\n", name, (long long)T, steps);
            attamba_context_profile_print(ctx, stdout, steps, (cli_now() - t0) / steps);
        }
    }
    free(host_logits);
    attamba_session_destroy(s);
    sa->s = NULL;
    return t > 0 ? 1.0 / t : 0;
}

/* paper-60m at width dim, depth layers, heads of 64, as variant v. */
static attamba_status variant_config(const variant *v, int dim, int layers, attamba_config **cfg, char *err,
                                     size_t err_size) {
    char fields[400];
    snprintf(fields, sizeof fields,
             "{\"kind\": \"%s\", \"dim\": %d, \"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
             "\"ssm_inner\": %d, \"chunk\": %d, \"window\": %d, \"weight_type\": \"%s\", \"boundaries\": \"cyclic\"}",
             v->kind, dim, layers, dim / 64, dim / 64, dim / 2, v->chunk, v->window, v->weights);
    attamba_status s = attamba_config_load("paper-60m", cfg, err, err_size);
    if (!s) s = attamba_config_set(*cfg, NULL, fields, err, err_size);
    return s;
}

int bench_decode_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"contexts", required_argument, 0, 'c'},
                                         {"dim", required_argument, 0, 'D'},    {"layers", required_argument, 0, 'l'},
                                         {"steps", required_argument, 0, 's'},  {"prefill-max", required_argument, 0, 'p'},
                                         {"json", required_argument, 0, 'j'},   {"svg", required_argument, 0, 'g'},
                                         {"only", required_argument, 0, 'o'},   {"devices", required_argument, 0, 'E'},
                                         {"split", required_argument, 0, 'S'},  {"weight-types", required_argument, 0, 'w'},
                                         {"cache-types", required_argument, 0, 'k'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *device = NULL, *devices = NULL, *split = NULL, *contexts = "1024,4096,16384,32768", *json = NULL, *svg = NULL, *only = NULL;
    const char *types = "f32", *cache_types = "f32";
    int dim = 512, layers = 8, steps = 5, prefill_max = 2048, copy_mib = 256, c;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:c:D:l:s:p:j:g:o:E:S:w:k:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w': types = optarg; break;
        case 'k': cache_types = optarg; break;
        case 'E': devices = optarg; break;
        case 'S': split = optarg; break;
        case 'o': only = optarg; break;
        case 'd': device = optarg; break;
        case 'c': contexts = optarg; break;
        case 'D': if (!cli_number("bench decode", "dim", optarg, 64, 65536, 1, &v)) return 2; dim = (int)v; break;
        case 'l': if (!cli_number("bench decode", "layers", optarg, 1, 256, 1, &v)) return 2; layers = (int)v; break;
        case 's': if (!cli_number("bench decode", "steps", optarg, 1, 1e6, 1, &v)) return 2; steps = (int)v; break;
        case 'p': if (!cli_number("bench decode", "prefill-max", optarg, 0, 1e7, 1, &v)) return 2; prefill_max = (int)v; break;
        case 'j': json = optarg; break;
        case 'g': svg = optarg; break;
        case 'h':
            printf("usage: attamba bench decode [--contexts 1024,4096,...] [--dim 512] [--layers 8] [--steps 5]\n"
                   "                            [--prefill-max 2048] [--only NAME,...] [--json FILE|-] [--svg FILE]\n"
                   "                            [--weight-types f32,f16,q8] [--cache-types f32,f16]\n"
                   "                            [--device P:D | --devices LIST --split layer]\n\n"
                   "Decode tokens/s at each context (cache filled synthetically to that length), prefill tokens/s\n"
                   "for contexts up to --prefill-max, KV-cache bytes and peak device memory, for Attamba P=4/8/16\n"
                   "(L=8), a full-attention transformer and a sliding-window one (L=64), all of width --dim with\n"
                   "heads of 64 and a 32000 vocabulary (--only: the models whose names are listed, e.g.\n"
                   "'transformer,attamba P=8 L=8'). Per decode step it also reports what the step asks of\n"
                   "the device (kernel launches, buffer creations, blocking reads; the logits read included) and\n"
                   "its bytes (weights + cache) over the copy bandwidth measured in the same run. With\n"
                   "--devices LIST --split layer, each model also decodes with its layers spread over the devices\n"
                   "(equal shares), next to the first device alone: what a split costs (it is for models or\n"
                   "caches that do not fit one device, not for speed). --weight-types: each model with its\n"
                   "projections stored as each type (attamba quantize; named e.g. 'transformer q8'), in turn.\n"
                   "--cache-types: each of those with its KV cache's stored keys and values of each type (named\n"
                   "e.g. 'transformer q8 kv-f16'). With ATTAMBA_PROFILE=1 each model and context then decodes\n"
                   "--steps more tokens and prints their kernels per step, with the device's idle time before\n"
                   "each kernel and in all (the host's work between steps, launch gaps).\n");
            return 0;
        default: return 2;
        }
    }
    if (dim % 64) return cli_error("bench decode", "--dim must be a multiple of 64"), 2;
    int64_t ctxs[16];
    int nc = 0;
    for (const char *p = contexts; *p && nc < 16;) {
        ctxs[nc++] = strtoll(p, (char **)&p, 10);
        if (ctxs[nc - 1] < 16) return cli_error("bench decode", "bad --contexts '%s'", contexts), 2;
        if (*p == ',') p++;
    }
    static const variant base[] = {{"transformer", "transformer", 1, 0, "f32", ATTAMBA_CACHE_F32},
                                   {"transformer-swa L=64", "transformer-swa", 1, 64, "f32", ATTAMBA_CACHE_F32},
                                   {"attamba P=4 L=8", "attamba", 4, 8, "f32", ATTAMBA_CACHE_F32},
                                   {"attamba P=8 L=8", "attamba", 8, 8, "f32", ATTAMBA_CACHE_F32},
                                   {"attamba P=16 L=8", "attamba", 16, 8, "f32", ATTAMBA_CACHE_F32}};
    static const char *const weight_types[] = {"f32", "f16", "q8"};
    enum { N_BASE = sizeof base / sizeof base[0] };
    /* every model with every weight type and cache type asked for: f32 ones keep the plain name */
    variant vs[3 * 2 * N_BASE];
    int nv = 0;
    for (int b = 0; b < N_BASE; b++) {
        if (!bench_listed(only, base[b].name)) continue;
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 2; k++) {
                if (!bench_listed(types, weight_types[t]) || !bench_listed(cache_types, k ? "f16" : "f32")) continue;
                vs[nv] = base[b];
                vs[nv].weights = weight_types[t];
                vs[nv].cache = k ? ATTAMBA_CACHE_F16 : ATTAMBA_CACHE_F32;
                snprintf(vs[nv].name, sizeof vs[nv].name, "%.32s%s%s%s", base[b].name, t ? " " : "",
                         t ? weight_types[t] : "", k ? " kv-f16" : "");
                nv++;
            }
    }
    if (!nv)
        return cli_error("bench decode", "no model matches --only '%s', --weight-types '%s' and --cache-types '%s'",
                         only ? only : "", types, cache_types), 2;
    attamba_context *ctxs_[ATTAMBA_MAX_DEVICES];
    int n_dev = cli_open_devices(devices, device, ctxs_);
    if (!n_dev) return 1;
    attamba_context *ctx = ctxs_[0];
    if (n_dev > 1 && !(split && !strcmp(split, "layer"))) {
        cli_close_devices(ctxs_, n_dev);
        return cli_error("bench decode", "%d devices: give --split layer", n_dev), 2;
    }
    double copy_gbs = bench_copy_gbs(ctx, copy_mib, 1.0);
    printf("device: %s; d=%d, %d layers, 64-wide heads, vocab 32000; copy bandwidth %.1f GB/s\n",
           attamba_context_device(ctx)->name,
           dim, layers, copy_gbs);
    printf("%-22s %8s %12s %12s %14s %12s %12s %9s %18s\n", "model", "context", "decode tok/s", "prefill tok/s",
           "cache bytes", "vs full", "peak MiB", "of BW", "launch/alloc/read");
    cJSON *out = cJSON_CreateArray();
    double *tps = calloc((size_t)(nv * nc), sizeof *tps);
    int64_t *full_bytes = calloc((size_t)nc, sizeof *full_bytes);
    int rc = 0;
    for (int j = 0; j < nv && !rc; j++) {
        attamba_config *cfg = NULL;
        attamba_model *m = NULL, *ms = NULL; /* ms: the same model split over the devices */
        attamba_model_params one = attamba_model_params_default(), all = one;
        one.devices = all.devices = ctxs_;
        one.n_devices = 1;
        all.n_devices = n_dev;
        all.split_mode = ATTAMBA_SPLIT_LAYER;
        char err[600];
        uint64_t before, after;
        attamba_context_memory(ctx, &before, NULL);
        if (variant_config(&vs[j], dim, layers, &cfg, err, sizeof err)) rc = cli_error("bench decode", "%s", err);
        else if (attamba_model_create(cfg, &one, 1, &m)) rc = cli_error("bench decode", "%s", attamba_context_last_error(ctx));
        attamba_context_memory(ctx, &after, NULL); /* after - before: m's weights */
        if (!rc && n_dev > 1 && attamba_model_create(cfg, &all, 1, &ms))
            rc = cli_error("bench decode", "%s", attamba_context_last_error(ctx));
        attamba_config_info info;
        int tied = 0;
        if (!rc) {
            attamba_config_describe(cfg, &info);
            char *text = attamba_config_json(cfg);
            cJSON *o = text ? cJSON_Parse(text) : NULL;
            tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "tie_embeddings"));
            cJSON_Delete(o);
            free(text);
        }
        if (rc) {
            attamba_model_destroy(m);
            attamba_config_destroy(cfg);
            break;
        }
        for (int i = 0; i < nc && !rc; i++) {
            int64_t T = ctxs[i];
            attamba_context_memory_reset_peak(ctx);
            step_arg sa, ssa;
            int64_t bytes = 0;
            bench_timing tm, tp_tm = {0};
            double rate = decode_rate(ctx, m, &vs[j], T, steps, &sa, &bytes, &tm), t = rate > 0 ? 1.0 / rate : -1;
            if (!(rate > 0)) continue;
            double split_rate = ms ? decode_rate(ctx, ms, &vs[j], T, steps, &ssa, NULL, NULL) : 0;
            double prefill = 0;
            if (T <= prefill_max) {
                int32_t *tok = malloc((size_t)T * sizeof *tok);
                float *lg = malloc((size_t)info.vocab_size * sizeof *lg);
                for (int64_t k = 0; tok && k < T; k++) tok[k] = (int32_t)((k * 7919) % 32000);
                prefill_arg pa = {m, tok, (int)T, lg};
                double tp = tok && lg ? bench_time(one_prefill, &pa, 1, 0.0, &tp_tm) : -1;
                prefill = tp > 0 ? T / tp : 0;
                free(tok);
                free(lg);
            }
            if (j == 0) full_bytes[i] = bytes;
            tps[j * nc + i] = t > 0 ? 1.0 / t : 0;
            uint64_t peak_bytes;
            attamba_context_memory(ctx, NULL, &peak_bytes);
            double peak = (double)peak_bytes / (1 << 20);
            /* a step reads every weight but the embedding table (one row), and the cache */
            int64_t emb = tied ? 0 : (int64_t)info.vocab_size * info.d_model;
            double w_bytes = (double)(after - before) - 4.0 * (double)emb, step_bytes = w_bytes + (double)bytes;
            double bw = copy_gbs > 0 ? step_bytes * tps[j * nc + i] * 1e-9 / copy_gbs : 0;
            const attamba_counters *pt = &sa.per_token;
            char cnt[48];
            snprintf(cnt, sizeof cnt, "%llu/%llu/%llu", (unsigned long long)pt->launches,
                     (unsigned long long)pt->allocations, (unsigned long long)pt->blocking_reads);
            char vs_full[16] = "-";
            if (full_bytes[i]) snprintf(vs_full, sizeof vs_full, "%.2fx", (double)full_bytes[i] / bytes);
            printf("%-22s %8lld %12.1f %12s %14lld %12s %12.1f %8.0f%% %18s\n", vs[j].name, (long long)T,
                   tps[j * nc + i], prefill > 0 ? "" : "-", (long long)bytes, vs_full, peak, 100 * bw, cnt);
            if (prefill > 0) printf("%-22s %8s %12s %12.1f\n", "", "", "", prefill);
            if (ms) printf("%-22s %8s %12.1f   over %d devices (layer split): %.2fx of one\n", "", "", split_rate,
                           n_dev, split_rate / tps[j * nc + i]);
            fflush(stdout);
            /* FLOPs: two per weight (embedding row excluded) and the attention over the keys position T
             * visits (the model's total over [0, T + 1) minus that over [0, T)); bytes: every weight
             * and the cache read once. Prefill: the same over T tokens, the weights read once. */
            attamba_config_cost at_T, at_T1;
            attamba_config_estimate(cfg, T, &at_T);
            attamba_config_estimate(cfg, T + 1, &at_T1);
            double w_flop = 2.0 * (double)(info.parameters - emb), head = 2.0 * info.vocab_size * info.d_model;
            double attn_T = at_T.attention_flops * (double)T;
            double flop = w_flop + at_T1.attention_flops * (double)(T + 1) - attn_T;
            char shape[48];
            snprintf(shape, sizeof shape, "context=%lld", (long long)T);
            if (prefill > 0) {
                /* a prefill computes the output layer for its last token only */
                cJSON *po = bench_entry(ctx, "decode", "prefill", shape, vs[j].name, &tp_tm,
                                        (w_flop - head) * (double)T + head + attn_T, w_bytes + (double)bytes);
                cJSON_AddNumberToObject(po, "context", (double)T);
                bench_entry_rate(po, prefill, "tokens/s");
                cJSON_AddItemToArray(out, po);
            }
            cJSON *o = bench_entry(ctx, "decode", "decode", shape, vs[j].name, &tm, flop, step_bytes);
            bench_entry_rate(o, tps[j * nc + i], "tokens/s");
            cJSON_AddStringToObject(o, "model", vs[j].name);
            cJSON_AddStringToObject(o, "weight_type", vs[j].weights);
            cJSON_AddStringToObject(o, "cache_type", vs[j].cache == ATTAMBA_CACHE_F16 ? "f16" : "f32");
            cJSON_AddNumberToObject(o, "context", (double)T);
            if (prefill > 0) cJSON_AddNumberToObject(o, "prefill_tokens_per_s", prefill);
            cJSON_AddNumberToObject(o, "cache_bytes", (double)bytes);
            cJSON_AddNumberToObject(o, "peak_device_bytes", (double)peak_bytes);
            cJSON_AddNumberToObject(o, "copy_gbs", copy_gbs);
            cJSON_AddNumberToObject(o, "bandwidth_fraction", bw);
            cJSON_AddNumberToObject(o, "n_layers", layers);
            bench_entry_counters(o, pt, 1);
            if (full_bytes[i]) cJSON_AddNumberToObject(o, "cache_ratio_to_full", (double)full_bytes[i] / bytes);
            if (tps[i] > 0) cJSON_AddNumberToObject(o, "decode_speedup_vs_full", tps[j * nc + i] / tps[i]);
            if (ms) {
                cJSON_AddNumberToObject(o, "split_devices", n_dev);
                cJSON_AddNumberToObject(o, "split_decode_tokens_per_s", split_rate);
            }
            cJSON_AddItemToArray(out, o);
        }
        attamba_model_destroy(m);
        attamba_model_destroy(ms);
        attamba_config_destroy(cfg);
    }
    if (tps[0] > 0) printf("\ndecode speedup over the full transformer:\n%-22s", "model");
    for (int i = 0; i < nc && tps[0] > 0; i++) printf(" %8lld", (long long)ctxs[i]);
    if (tps[0] > 0) printf("\n");
    for (int j = 1; j < nv && tps[0] > 0; j++) {
        printf("%-22s", vs[j].name);
        for (int i = 0; i < nc; i++) printf(" %7.2fx", tps[i] > 0 ? tps[j * nc + i] / tps[i] : 0);
        printf("\n");
    }
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench decode", "cannot write %s", json);
    if (!rc && svg) write_svg(svg, vs, nv, ctxs, nc, tps);
    cJSON_Delete(out);
    free(tps);
    free(full_bytes);
    cli_close_devices(ctxs_, n_dev);
    return rc;
}
