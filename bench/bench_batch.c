/* attamba bench batch: batched decoding through the public API (attamba_session_create_batch and
 * attamba_session_step): the aggregate tokens/s of 1, 4, 16, ... sequences decoded together at a
 * given context, against one sequence alone, in interleaved rounds; and (--check) whether every
 * sequence of a batch gets exactly the greedy tokens it gets alone, from real prompts at that context.
 *
 * Timing fills every sequence's cache to the context synthetically (attamba_session_fill_synthetic: a
 * step's cost depends on how many rows it reads, not on their values). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"

static int32_t argmax(const float *x, int V) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[best]) best = v;
    return best;
}

/* Median seconds per step of n sequences at context T (each step's logits read back, as a server
 * reads them before sampling); negative on failure (said on stderr). */
static double step_seconds(attamba_context *ctx, attamba_model *m, int n, int64_t T, int steps, int64_t *cache_bytes) {
    attamba_session *s = NULL;
    int V = attamba_model_vocab_size(m);
    float *logits = malloc((size_t)n * V * sizeof *logits);
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    double *t = malloc((size_t)(steps + 1) * sizeof *t), med = -1;
    attamba_status st = logits && tok && t ? ATTAMBA_OK : ATTAMBA_ERR_OUT_OF_MEMORY;
    if (!st) st = attamba_session_create_batch(m, n, T + steps + 2, &s);
    if (!st) st = attamba_session_fill_synthetic(s, T);
    for (int i = 0; i < n && !st; i++) tok[i] = (int32_t)((i * 7919 + 65) % V);
    for (int k = 0; k <= steps && !st; k++) { /* the first step warms up */
        double t0 = cli_now();
        st = attamba_session_step(s, tok, logits);
        t[k] = cli_now() - t0;
    }
    if (!st) {
        med = bench_median(t + 1, steps);
        *cache_bytes = attamba_session_cache_bytes(s, 0);
    } else {
        fprintf(stderr, "attamba bench batch: %d sequences at %lld: %s\n", n, (long long)T, attamba_context_last_error(ctx));
    }
    attamba_session_destroy(s);
    free(logits), free(tok), free(t);
    return med;
}

/* Prompt i of check_batch: T - 3i tokens into prompt; returns its length. */
static int fill_prompt(int i, int64_t T, int V, int32_t *prompt) {
    int len = (int)(T - 3 * i);
    for (int t = 0; t < len; t++) prompt[t] = (int32_t)(((int64_t)t * 131 + i * 977 + 5) % V);
    return len;
}

/* n prompts of about T tokens (each a little shorter than the one before, so positions differ):
 * greedy decode of G tokens, alone and batched. Returns 1 when every sequence got the same tokens,
 * 0 when one did not, -1 on failure; *max_diff gets the largest logit difference seen. */
static int check_batch(attamba_context *ctx, attamba_model *m, int n, int64_t T, int G, double *max_diff) {
    int V = attamba_model_vocab_size(m);
    int32_t *prompt = malloc((size_t)T * sizeof *prompt), *alone = malloc((size_t)n * G * sizeof *alone);
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    float *lg = malloc((size_t)n * V * sizeof *lg), *ref = malloc((size_t)n * G * V * sizeof *ref);
    attamba_status st = prompt && alone && tok && lg && ref ? ATTAMBA_OK : ATTAMBA_ERR_OUT_OF_MEMORY;
    attamba_session *b = NULL;
    int same = 1;
    *max_diff = 0;
    for (int i = 0; i < n && !st; i++) { /* alone: G greedy tokens after the prompt */
        attamba_session *s = NULL;
        int len = fill_prompt(i, T, V, prompt);
        st = attamba_session_create(m, T + G + 1, &s);
        if (!st) st = attamba_session_feed(s, prompt, len, ref + (size_t)i * G * V);
        for (int k = 0; k < G && !st; k++) {
            alone[i * G + k] = argmax(ref + ((size_t)i * G + k) * V, V);
            if (k + 1 < G) st = attamba_session_feed(s, &alone[i * G + k], 1, ref + ((size_t)i * G + k + 1) * V);
        }
        attamba_session_destroy(s);
    }
    if (!st) st = attamba_session_create_batch(m, n, T + G + 1, &b);
    for (int i = 0; i < n && !st; i++) {
        int len = fill_prompt(i, T, V, prompt);
        st = attamba_session_prefill(b, i, prompt, len, lg + (size_t)i * V);
    }
    for (int k = 0; k < G && !st; k++) {
        for (int i = 0; i < n; i++) {
            const float *want = ref + ((size_t)i * G + k) * V, *got = lg + (size_t)i * V;
            for (int v = 0; v < V; v++) *max_diff = fmax(*max_diff, (double)fabsf(got[v] - want[v]));
            tok[i] = argmax(got, V);
            same &= tok[i] == alone[i * G + k];
        }
        if (k + 1 < G) st = attamba_session_step(b, tok, lg);
    }
    if (st) fprintf(stderr, "attamba bench batch: check: %s\n", attamba_context_last_error(ctx));
    attamba_session_destroy(b);
    free(prompt), free(alone), free(tok), free(lg), free(ref);
    return st ? -1 : same;
}

int bench_batch_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"device", required_argument, 0, 'd'}, {"preset", required_argument, 0, 'p'},
        {"kinds", required_argument, 0, 'k'},  {"context", required_argument, 0, 'c'},
        {"sessions", required_argument, 0, 'n'}, {"steps", required_argument, 0, 's'},
        {"rounds", required_argument, 0, 'r'}, {"check", required_argument, 0, 'C'},
        {"json", required_argument, 0, 'j'},   {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *device = NULL, *preset = "paper-60m", *kinds = "attamba,transformer", *sessions = "1,4,16",
               *json = NULL;
    int64_t T = 4096;
    int steps = 5, rounds = 3, check = 0, c;
    double v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:p:k:c:n:s:r:C:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 'p': preset = optarg; break;
        case 'k': kinds = optarg; break;
        case 'n': sessions = optarg; break;
        case 'j': json = optarg; break;
        case 'c': if (!cli_number("bench batch", "context", optarg, 64, 1 << 24, 1, &v)) return 2; T = (int64_t)v; break;
        case 's': if (!cli_number("bench batch", "steps", optarg, 1, 1000, 1, &v)) return 2; steps = (int)v; break;
        case 'r': if (!cli_number("bench batch", "rounds", optarg, 1, 100, 1, &v)) return 2; rounds = (int)v; break;
        case 'C': if (!cli_number("bench batch", "check", optarg, 0, 1000, 1, &v)) return 2; check = (int)v; break;
        case 'h':
            printf("usage: attamba bench batch [--preset paper-60m] [--kinds attamba,transformer] [--context 4096]\n"
                   "                           [--sessions 1,4,16] [--steps 5] [--rounds 3] [--check G]\n"
                   "                           [--json FILE|-] [--device P:D]\n\n"
                   "Batched decoding through the public API: the aggregate tokens/s of each number of sequences\n"
                   "decoded together by attamba_session_step at --context (caches filled synthetically; the\n"
                   "median of --steps steps, each reading its logits back), in --rounds interleaved rounds,\n"
                   "with the median ratio to one sequence of the same round. --check G: before timing, every\n"
                   "sequence count also decodes G greedy tokens after real prompts of about --context tokens\n"
                   "(a few tokens apart, so positions differ), batched and alone, and says whether every\n"
                   "sequence got the same tokens (and the largest logit difference).\n");
            return 0;
        default: return 2;
        }
    }
    int ns[16], nn = 0;
    for (const char *p = sessions; *p && nn < 16;) {
        ns[nn++] = (int)strtol(p, (char **)&p, 10);
        if (ns[nn - 1] < 1 || ns[nn - 1] > 4096 || (*p && *p != ','))
            return cli_error("bench batch", "bad --sessions '%s'", sessions), 2;
        if (*p == ',') p++;
    }
    if (T <= 3 * ns[nn - 1]) return cli_error("bench batch", "--context too short for the sessions"), 2;
    attamba_context *ctx = cli_open_device(device);
    if (!ctx) return 1;
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    printf("device: %s; preset %s, context %lld, median of %d steps, %d rounds\n", attamba_context_device(ctx)->name,
           preset,
           (long long)T, steps, rounds);
    printf("%-12s %9s %14s %14s %10s %14s\n", "model", "sequences", "step ms", "tokens/s", "vs one", "check");
    for (const char *k = kinds; *k && !rc;) {
        char kind[32];
        size_t len = strcspn(k, ",");
        snprintf(kind, sizeof kind, "%.*s", (int)CLI_MIN(len, sizeof kind - 1), k);
        k += len + (k[len] == ',');
        char err[600];
        attamba_config *cfg = NULL;
        attamba_model *m = NULL;
        attamba_model_params mp = attamba_model_params_default();
        mp.devices = &ctx, mp.n_devices = 1;
        uint64_t before = 0, weight_bytes = 0; /* what the model's weights take on the device */
        attamba_context_memory(ctx, &before, NULL);
        if (attamba_config_load(preset, &cfg, err, sizeof err) || attamba_config_set(cfg, "kind", kind, err, sizeof err))
            rc = cli_error("bench batch", "%s", err);
        else if (attamba_model_create(cfg, &mp, 1, &m))
            rc = cli_error("bench batch", "%s", attamba_context_last_error(ctx));
        attamba_config_info info;
        if (!rc) {
            attamba_context_memory(ctx, &weight_bytes, NULL);
            weight_bytes -= before;
            attamba_config_describe(cfg, &info);
        }
        attamba_config_destroy(cfg);
        if (rc) break;
        const char *checks[16] = {0};
        double diffs[16] = {0};
        for (int j = 0; j < nn && check && !rc; j++) {
            int same = check_batch(ctx, m, ns[j], T, check, &diffs[j]);
            rc = same < 0;
            checks[j] = same > 0 ? "same tokens" : "DIFFERENT";
        }
        double *sec = calloc((size_t)(nn * rounds), sizeof *sec), *ratio = calloc((size_t)(nn * rounds), sizeof *ratio);
        int64_t bytes[16] = {0};
        for (int r = 0; r < rounds && !rc; r++)
            for (int j = 0; j < nn && !rc; j++) {
                sec[j * rounds + r] = step_seconds(ctx, m, ns[j], T, steps, &bytes[j]);
                rc = !(sec[j * rounds + r] > 0);
                /* tokens/s over the first count's in the same round */
                ratio[j * rounds + r] = ns[j] * sec[r] / (ns[0] * sec[j * rounds + r]);
            }
        for (int j = 0; j < nn && !rc; j++) {
            double s = bench_median(sec + j * rounds, rounds), rt = bench_median(ratio + j * rounds, rounds);
            double tps = ns[j] / s;
            printf("%-12s %9d %14.2f %14.1f %9.2fx %14s\n", kind, ns[j], 1e3 * s, tps, rt,
                   checks[j] ? checks[j] : "-");
            char shape[64], variant[64];
            snprintf(shape, sizeof shape, "context=%lld", (long long)T);
            snprintf(variant, sizeof variant, "%s n=%d", kind, ns[j]);
            bench_timing tm = {s, s, steps};
            cJSON *o = bench_entry(ctx, "batch", "decode", shape, variant, &tm, 2.0 * (double)info.parameters * ns[j],
                                   (double)weight_bytes + (double)ns[j] * (double)bytes[j]);
            bench_entry_rate(o, tps, "tokens/s");
            cJSON_AddStringToObject(o, "model", kind);
            cJSON_AddNumberToObject(o, "sequences", ns[j]);
            cJSON_AddNumberToObject(o, "context", (double)T);
            cJSON_AddNumberToObject(o, "ratio_to_first", rt);
            if (checks[j]) {
                cJSON_AddBoolToObject(o, "same_tokens_as_alone", checks[j][0] == 's');
                cJSON_AddNumberToObject(o, "max_logit_diff", diffs[j]);
            }
            cJSON_AddItemToArray(out, o);
        }
        free(sec), free(ratio);
        attamba_model_destroy(m);
        fflush(stdout);
    }
    if (attamba_context_profile(ctx, NULL, NULL)) attamba_context_profile_print(ctx, stdout, 0, 0);
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench batch", "cannot write %s", json);
    cJSON_Delete(out);
    attamba_context_destroy(ctx);
    return rc;
}
