/* The public evaluation helpers (include/attamba/attamba.h): greedy predictions computed on the device,
 * and the validation loss of a training file's held-out tail, as train_run measures it. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops/loss.h"
#include "train/data.h"
#include "train/run.h"

attamba_status attamba_model_argmax(attamba_model *m, const int32_t *tokens, int batch, int T, int32_t *argmax) {
    if (!tokens || !argmax) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_argmax: NULL buffer");
    if (batch < 1 || T < 1)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_argmax: %d sequences of %d tokens", batch, T);
    tensor logits = {0}, rows = {0}, best = {0};
    RT_TRY(model_forward(m, tokens, batch, T, &logits));
    rt_ctx *ctx = logits.buf->ctx; /* the last stage's device with a layer split */
    attamba_status s = tensor_rows(&logits, &rows);
    if (!s) s = tensor_scratch(ctx, &best, TENSOR_I32, 1, (int64_t[]){(int64_t)batch * T});
    if (!s) s = ops_argmax(ctx, &rows, &best);
    if (!s) s = tensor_download(&best, argmax);
    if (s) rt_fail_from(m->ctx, s, ctx);
    tensor_free(&best);
    tensor_free(&rows);
    tensor_free(&logits);
    return s;
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
    if (!s) s = train_eval(m, &d, begin, d.n, T, batch, n_windows, loss);
    data_close(&d);
    return s;
}
