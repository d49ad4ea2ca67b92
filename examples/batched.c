/* Batched decoding: one session holds a sequence per prompt, and every attamba_session_step advances
 * all of them with one pass over the weights (what a server does with its requests).
 *   build/example_batched [-t TEMPERATURE] MODEL_DIR N "prompt 1" "prompt 2" ...
 * Each sequence has its own sampler (greedy by default) and stops at EOS or after N tokens.
 *
 * A finished sequence takes ATTAMBA_TOKEN_SKIP at every later step: it stays as it is while the others
 * advance. A server does better with the slot: reset it, prefill the next request's prompt into it,
 * sample that request's first token from the prefill's logits, and the new sequence joins the next
 * step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <attamba/attamba.h>

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    float temperature = 0.0f; /* <= 0: greedy */
    if (argc > 2 && !strcmp(argv[1], "-t")) temperature = (float)atof(argv[2]), argv += 2, argc -= 2;
    if (argc < 4) {
        fprintf(stderr, "usage: example_batched [-t TEMPERATURE] MODEL_DIR N PROMPT...\n");
        return 2;
    }
    int N = atoi(argv[2]), S = argc - 3; /* tokens per sequence, sequences */
    if (N < 1) {
        fprintf(stderr, "N must be >= 1\n");
        return 2;
    }
    char **text = argv + 3;
    char err[512];
    attamba_context *ctx;
    if (attamba_context_create(NULL, &ctx, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    attamba_model *m = NULL;
    const attamba_tokenizer *tok = NULL;
    attamba_session *s = NULL;
    attamba_status st = attamba_model_load(ctx, argv[1], &m);
    if (!st) st = attamba_model_tokenizer(m, &tok);
    int V = st ? 0 : attamba_model_vocab_size(m);
    int32_t **ids = calloc((size_t)S, sizeof *ids), *next = calloc((size_t)S, sizeof *next);
    int64_t *n = calloc((size_t)S, sizeof *n), longest = 0;
    int *done = calloc((size_t)S, sizeof *done);
    attamba_sampler **smp = calloc((size_t)S, sizeof *smp);
    float *logits = malloc((size_t)S * (size_t)(V > 0 ? V : 1) * sizeof *logits);
    if (!st && (!ids || !next || !n || !done || !smp || !logits)) st = ATTAMBA_ERR_OUT_OF_MEMORY;

    /* each prompt's ids (BOS first) with room for N more; a sampler per sequence, each its own seed */
    for (int i = 0; i < S && !st; i++) {
        size_t len = strlen(text[i]);
        st = attamba_tokenizer_encode(tok, text[i], len, 1, NULL, 0, &n[i]);
        if (!st && !(ids[i] = malloc((size_t)(n[i] + N) * sizeof **ids))) st = ATTAMBA_ERR_OUT_OF_MEMORY;
        if (!st) st = attamba_tokenizer_encode(tok, text[i], len, 1, ids[i], n[i], &n[i]);
        if (n[i] > longest) longest = n[i];
        attamba_sampler_params sp = attamba_sampler_params_default();
        sp.temperature = temperature, sp.seed = (uint64_t)i;
        if (!st) st = attamba_sampler_create(ctx, &sp, &smp[i]);
        for (int64_t k = 1; !st && k < n[i]; k++) attamba_sampler_accept(smp[i], ids[i][k]);
    }
    /* one session; each prompt prefilled into its own sequence, leaving the logits of what follows */
    if (!st) st = attamba_session_create_batch(m, S, longest + N, &s);
    for (int i = 0; i < S && !st; i++) st = attamba_session_prefill(s, i, ids[i], (int)n[i], logits + (size_t)i * V);

    int64_t generated = 0, live = S;
    double t0 = now();
    for (int step = 0; step < N && live > 0 && !st; step++) {
        for (int i = 0; i < S && !st; i++) {
            if (!done[i]) {
                st = attamba_sampler_sample(smp[i], logits + (size_t)i * V, V, &next[i]);
                if (st) break;
                if (next[i] == attamba_tokenizer_eos(tok)) done[i] = 1, live--;
                else ids[i][n[i]++] = next[i], generated++;
            }
            if (done[i]) next[i] = ATTAMBA_TOKEN_SKIP; /* finished: stays as it is */
        }
        if (!st && live > 0) st = attamba_session_step(s, next, logits); /* every sequence's next token */
    }
    double secs = now() - t0;

    for (int i = 0; i < S && !st; i++) {
        size_t len;
        char *out = NULL;
        st = attamba_tokenizer_decode(tok, ids[i], n[i], NULL, 0, &len); /* how many bytes */
        if (!st && !(out = malloc(len + 1))) st = ATTAMBA_ERR_OUT_OF_MEMORY;
        if (!st) st = attamba_tokenizer_decode(tok, ids[i], n[i], out, len + 1, &len);
        if (!st && done[i]) printf("[%d] %s\n    (finished at EOS)\n", i, out);
        else if (!st)
            printf("[%d] %s\n    (%d tokens; position %lld, KV cache %lld bytes)\n", i, out, N,
                   (long long)attamba_session_position(s, i), (long long)attamba_session_cache_bytes(s, i));
        free(out);
    }
    if (st) fprintf(stderr, "%s: %s\n", attamba_status_str(st), attamba_context_last_error(ctx));
    else fprintf(stderr, "%d sequences: %lld tokens in %.3f s, %.1f tokens/s together\n", S, (long long)generated,
                 secs, secs > 0 ? (double)generated / secs : 0.0);

    for (int i = 0; i < S; i++) {
        if (smp) attamba_sampler_destroy(smp[i]);
        if (ids) free(ids[i]);
    }
    attamba_session_destroy(s); /* a session before its model; the model and samplers before their context */
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(ids), free(next), free(n), free(done), free(smp), free(logits);
    return st != ATTAMBA_OK;
}
