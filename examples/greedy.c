/* The public API in 80 lines: load a model, encode a prompt with the model's tokenizer, then sample one
 * token at a time until EOS or N tokens.
 *   build/example_greedy MODEL_DIR "prompt" [N [TEMPERATURE [SEED]]]
 * Greedy (the argmax) by default; TEMPERATURE > 0 draws from the softmax instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attamba/attamba.h>

/* Writes the text of one token to stdout (a byte for the byte tokenizer; specials such as BOS have none). */
static attamba_status put_token(const attamba_tokenizer *tok, int32_t id) {
    char text[64];
    size_t len;
    attamba_status st = attamba_tokenizer_decode(tok, &id, 1, text, sizeof text, &len);
    if (!st) fwrite(text, 1, len < sizeof text ? len : sizeof text, stdout);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [N [TEMPERATURE [SEED]]]\n", argv[0]);
        return 2;
    }
    int n_new = argc > 3 ? atoi(argv[3]) : 100;
    attamba_sampler_params sp = attamba_sampler_params_default();
    sp.temperature = argc > 4 ? (float)atof(argv[4]) : 0.0f; /* <= 0: greedy */
    sp.seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 0;

    char err[512];
    attamba_context *ctx;
    if (attamba_context_create(NULL, &ctx, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    attamba_model *m = NULL;
    const attamba_tokenizer *tok = NULL;
    attamba_sampler *smp = NULL;
    attamba_session *s = NULL;
    int32_t *prompt = NULL;
    float *logits = NULL;
    int64_t n = 0;
    attamba_status st = attamba_model_load(ctx, argv[1], &m);
    if (!st) st = attamba_model_tokenizer(m, &tok);
    if (!st) st = attamba_tokenizer_encode(tok, argv[2], strlen(argv[2]), 1, NULL, 0, &n); /* how many ids */
    if (!st && (!(prompt = malloc((size_t)n * sizeof *prompt)) ||
                !(logits = malloc((size_t)attamba_model_vocab_size(m) * sizeof *logits))))
        st = ATTAMBA_ERR_OUT_OF_MEMORY;
    if (!st) st = attamba_tokenizer_encode(tok, argv[2], strlen(argv[2]), 1, prompt, n, &n); /* BOS first */
    if (!st) st = attamba_sampler_create(ctx, &sp, &smp);
    for (int64_t i = 1; !st && i < n; i++) attamba_sampler_accept(smp, prompt[i]); /* for a repeat penalty */
    if (!st) st = attamba_session_create(m, n + n_new, &s);
    if (!st) st = attamba_session_feed(s, prompt, (int)n, logits); /* the prompt: logits of what follows */

    if (!st) fputs(argv[2], stdout);
    for (int i = 0; i < n_new && !st; i++) {
        int32_t next;
        st = attamba_sampler_sample(smp, logits, attamba_model_vocab_size(m), &next);
        if (st || next == attamba_tokenizer_eos(tok)) break;
        st = put_token(tok, next);
        fflush(stdout);
        if (!st) st = attamba_session_feed(s, &next, 1, logits);
    }
    printf("\n");
    if (st) fprintf(stderr, "%s: %s\n", attamba_status_str(st), attamba_context_last_error(ctx));
    else fprintf(stderr, "KV cache: %lld bytes after %lld tokens\n", (long long)attamba_session_cache_bytes(s, 0),
                 (long long)attamba_session_position(s, 0));
    attamba_session_destroy(s); /* a session before its model; the model and samplers before their context */
    attamba_sampler_destroy(smp);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(prompt);
    free(logits);
    return st != ATTAMBA_OK;
}
