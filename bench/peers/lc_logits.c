/* lc_logits: the logits llama.cpp computes for every position of one token sequence, as raw f32
 * [T, V], for the equivalence check of bench/peers/llamacpp.sh (llama.cpp at the version the script
 * pins; built against its libllama, not part of the engine).
 *     lc_logits MODEL.gguf TOKENS.txt OUT.bin      (TOKENS.txt: ids separated by spaces)
 * Flash attention off and an f32 KV cache: llama.cpp's exact path (its default CPU flash attention
 * rounds through f16, 2.5e-3 off on this model). No weight repacking (AMX may be advertised and not
 * work in a VM). */
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: lc_logits MODEL.gguf TOKENS.txt OUT.bin\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) return perror(argv[2]), 1;
    int cap = 1 << 16, n = 0;
    llama_token *tok = malloc((size_t)cap * sizeof *tok);
    while (n < cap && fscanf(f, "%d", &tok[n]) == 1) n++;
    fclose(f);
    if (n == 0) return fprintf(stderr, "%s: no tokens\n", argv[2]), 1;

    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.use_extra_bufts = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) return fprintf(stderr, "cannot load %s\n", argv[1]), 1;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)n;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return fprintf(stderr, "cannot create a context\n"), 1;
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = tok[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b)) return fprintf(stderr, "llama_decode failed\n"), 1;
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE *o = fopen(argv[3], "wb");
    if (!o) return perror(argv[3]), 1;
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t)V, o);
    if (fclose(o)) return perror(argv[3]), 1;
    printf("logits [%d, %d] -> %s\n", n, V, argv[3]);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(tok);
    return 0;
}
