/* The public API in 60 lines: load a model, feed a prompt, decode greedily.
 *   build/example_greedy MODEL_DIR "prompt" [N]
 * (byte-level models: token = byte; BOS is the config's bos_id, 256 by default) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attamba/attamba.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT [N]\n", argv[0]);
        return 2;
    }
    int n_new = argc > 3 ? atoi(argv[3]) : 100;
    char err[512];
    attamba_context *ctx;
    if (attamba_context_create(NULL, &ctx, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    attamba_model *m;
    if (attamba_model_load(ctx, argv[1], &m)) {
        fprintf(stderr, "%s\n", attamba_context_last_error(ctx));
        attamba_context_destroy(ctx);
        return 1;
    }
    int V = attamba_model_vocab_size(m), n = (int)strlen(argv[2]) + 1;
    int32_t *prompt = malloc((size_t)n * sizeof *prompt);
    float *logits = malloc((size_t)V * sizeof *logits);
    prompt[0] = 256; /* BOS of the byte tokenizer */
    for (int i = 1; i < n; i++) prompt[i] = (unsigned char)argv[2][i - 1];
    attamba_session *s;
    int rc = attamba_session_create(m, n + n_new, &s) || attamba_session_feed(s, prompt, n, logits);
    fputs(argv[2], stdout);
    for (int i = 0; i < n_new && !rc; i++) {
        int32_t best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        if (best > 255) break; /* EOS or another special */
        putchar(best);
        rc = attamba_session_feed(s, &best, 1, logits);
    }
    printf("\n");
    if (rc) fprintf(stderr, "%s\n", attamba_context_last_error(ctx));
    else fprintf(stderr, "KV cache: %lld bytes after %lld tokens\n", (long long)attamba_session_cache_bytes(s, 0),
                 (long long)attamba_session_position(s, 0));
    attamba_session_destroy(s);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(prompt);
    free(logits);
    return rc != 0;
}
