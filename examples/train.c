/* Training from C with the public API: a small byte-level model on a text file.
 *   build/example_train TEXT_FILE OUT_DIR [STEPS [PRESET]]
 * Draws random windows of the first 95% of the file, steps a trainer, evaluates on the last 5% every
 * 50 steps, and saves the model to OUT_DIR (then `attamba generate --model OUT_DIR --prompt ...`). */
#include <stdio.h>
#include <stdlib.h>

#include <attamba/attamba.h>

enum { EVAL_ROWS = 16 };

/* rows windows of seq tokens starting at random offsets of text[lo, hi) (rand() is enough here) */
static void draw(const unsigned char *text, long lo, long hi, int rows, int seq, int32_t *tok, int32_t *tgt) {
    for (int r = 0; r < rows; r++) {
        long at = lo + rand() % (hi - lo - seq - 1);
        for (int t = 0; t < seq; t++) tok[r * seq + t] = text[at + t], tgt[r * seq + t] = text[at + t + 1];
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEXT_FILE OUT_DIR [STEPS [PRESET]]\n", argv[0]);
        return 2;
    }
    int steps = argc > 3 ? atoi(argv[3]) : 200;
    FILE *f = fopen(argv[1], "rb");
    unsigned char *text = malloc(1 << 24);
    long n = f ? (long)fread(text, 1, 1 << 24, f) : 0, split = n * 95 / 100;
    if (f) fclose(f);
    attamba_train_params p = attamba_train_params_default(steps);
    p.batch = 8, p.seq = 128;
    if (steps < 1 || n - split < p.seq + 2) {
        fprintf(stderr, "need STEPS >= 1 and a text of a few KB (%s: %ld bytes)\n", argv[1], n);
        return 2;
    }
    char err[512];
    attamba_context *ctx;
    attamba_model *m = NULL;
    attamba_trainer *tr = NULL;
    if (attamba_context_create(NULL, &ctx, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t cap = sizeof(int32_t) * p.seq * (p.batch > EVAL_ROWS ? p.batch : EVAL_ROWS);
    int32_t *tok = malloc(cap), *tgt = malloc(cap);
    attamba_status s = attamba_model_init(ctx, argc > 4 ? argv[4] : "tiny", 1, &m);
    if (!s) s = attamba_trainer_create(m, &p, &tr);
    for (int i = 0; i < steps && !s; i++) {
        attamba_train_stats st;
        draw(text, 0, split, p.batch, p.seq, tok, tgt);
        s = attamba_trainer_step(tr, tok, tgt, &st);
        if (!s && ((i + 1) % 50 == 0 || i + 1 == steps)) {
            double val;
            srand(7); /* the same held-out windows every time */
            draw(text, split, n, EVAL_ROWS, p.seq, tok, tgt);
            srand((unsigned)i);
            s = attamba_trainer_evaluate(tr, tok, tgt, EVAL_ROWS, &val);
            if (!s) printf("step %lld  loss %.4f  lr %.2e  held-out %.4f\n", (long long)st.step, st.loss, st.lr, val);
        }
    }
    if (!s) s = attamba_model_save(m, argv[2]);
    if (s) fprintf(stderr, "%s\n", attamba_context_last_error(ctx));
    else printf("saved %s\n", argv[2]);
    attamba_trainer_destroy(tr);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(text), free(tok), free(tgt);
    return s != ATTAMBA_OK;
}
