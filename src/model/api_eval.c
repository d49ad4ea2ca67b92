/* The public evaluation helpers (include/attamba/attamba.h): greedy predictions computed on the device,
 * and the validation loss of a training file's held-out tail, as train_run measures it. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops/loss.h"
#include "train/data.h"
#include "train/run.h"

typedef struct argmax_args {
    const int32_t *tokens;
    int T;
    int32_t *argmax;
} argmax_args;

/* The argmax of rows [row, row + rows) on r (the model, or its copy on one device of a row split). */
static attamba_status argmax_rows(model *r, int i, int row, int rows, void *user) {
    (void)i;
    const argmax_args *a = user;
    int64_t at = (int64_t)row * a->T, n = (int64_t)rows * a->T;
    tensor logits = {0}, flat = {0}, best = {0};
    RT_TRY(model_forward(r, a->tokens + at, rows, a->T, &logits));
    rt_ctx *ctx = logits.buf->ctx; /* the last stage's device with a layer split */
    attamba_status s = tensor_rows(&logits, &flat);
    if (!s) s = tensor_scratch(ctx, &best, TENSOR_I32, 1, &n);
    if (!s) s = ops_argmax(ctx, &flat, &best);
    if (!s) s = tensor_download(&best, a->argmax + at);
    if (s) rt_fail_from(r->ctx, s, ctx);
    tensor_free(&best);
    tensor_free(&flat);
    tensor_free(&logits);
    return s;
}

attamba_status attamba_model_argmax(attamba_model *m, const int32_t *tokens, int batch, int T, int32_t *argmax) {
    if (!tokens || !argmax) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_argmax: NULL buffer");
    if (batch < 1 || T < 1)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_argmax: %d sequences of %d tokens", batch, T);
    argmax_args a = {tokens, T, argmax};
    return model_rows_run(m, batch, argmax_rows, &a); /* a row split shares the rows out over the devices */
}

attamba_status attamba_model_validate(attamba_model *m, const char *data, double val_frac, int T, int batch,
                                      int n_windows, double *loss) {
    static const char *op = "attamba_model_validate";
    if (!data || !loss) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL data or loss", op);
    if (!(val_frac >= 0 && val_frac < 1))
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: val_frac %g is outside [0, 1)", op, val_frac);
    if (T < 2 || batch < 1 || n_windows < 1)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: windows of %d tokens, batch %d, %d windows (want T >= 2, "
                       "batch >= 1, at least one window)", op, T, batch, n_windows);
    dataset d;
    char err[600];
    attamba_status s = data_open(data, &d, err, sizeof err);
    if (s) return rt_fail(m->ctx, s, "%s: %s", op, err);
    if (d.example && T != d.example) /* a task file's windows are its whole examples */
        s = rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s holds examples of %d tokens, not windows of %d", op,
                    data, d.example, T);
    if (!s && m->cfg.tokenizer != TOKENIZER_BYTES && !d.map && !d.example) /* as train_run refuses it */
        s = rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s is a text file, read as bytes, but the model's tokenizer "
                    "is %s: validate on its token file (attamba_tokenize_file)", op, data,
                    model_tokenizer_name(m->cfg.tokenizer));
    int64_t begin = data_train_end(&d, val_frac);
    for (int64_t i = begin; !s && i < d.n; i++) /* only the tail is read */
        if (d.tok[i] >= m->cfg.vocab_size)
            s = rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s has token %d at %lld, outside the model's vocabulary "
                        "of %d", op, data, d.tok[i], (long long)i, m->cfg.vocab_size);
    /* a row split shares each batch's windows out over its copies (equal shares) */
    if (!s && m->n_replicas > 1) s = train_eval_replicas(m->replicas, m->n_replicas, &d, begin, d.n, T, batch,
                                                         n_windows, loss);
    else if (!s) s = train_eval(m, &d, begin, d.n, T, batch, n_windows, loss);
    data_close(&d);
    return s;
}
