/* The public model and session API (include/attamba/attamba.h) over model.h and kv_cache.h. */
#include <string.h>

#include "kv_cache.h"

attamba_status attamba_model_load(attamba_context *ctx, const char *dir, attamba_model **out) {
    return model_load(ctx, dir, out);
}

attamba_model_params attamba_model_params_default(void) {
    return (attamba_model_params){NULL, 0, ATTAMBA_SPLIT_NONE, NULL};
}

attamba_status attamba_model_load_with(const char *dir, const attamba_model_params *p, attamba_model **out) {
    *out = NULL;
    if (!p || !p->devices || p->n_devices < 1 || !p->devices[0]) return ATTAMBA_ERR_INVALID_ARG;
    if (p->split_mode == ATTAMBA_SPLIT_LAYER) return model_load_split(p->devices, p->n_devices, dir, p->tensor_split, out);
    if (p->split_mode != ATTAMBA_SPLIT_NONE || p->n_devices != 1)
        return rt_fail(p->devices[0], ATTAMBA_ERR_INVALID_ARG,
                       "attamba_model_load_with: %d devices need split_mode ATTAMBA_SPLIT_LAYER", p->n_devices);
    return model_load(p->devices[0], dir, out);
}

void attamba_model_destroy(attamba_model *m) { model_destroy(m); }

int attamba_model_vocab_size(const attamba_model *m) { return m->cfg.vocab_size; }

attamba_status attamba_model_set_attention(attamba_model *m, int chunk, int window, const char *boundaries) {
    return model_set_attention(m, chunk, window, boundaries);
}

attamba_status attamba_model_forward(attamba_model *m, const int32_t *tokens, int batch, int T, float *logits) {
    if (!tokens || !logits) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_forward: NULL buffer");
    tensor out;
    RT_TRY(model_forward(m, tokens, batch, T, &out));
    attamba_status s = tensor_download(&out, logits);
    tensor_free(&out);
    return s;
}

attamba_status attamba_session_create(attamba_model *m, int64_t max_tokens, attamba_session **out) {
    return kv_cache_create(m, 1, max_tokens, out);
}

void attamba_session_destroy(attamba_session *s) { kv_cache_destroy(s); }

attamba_status attamba_session_feed(attamba_session *s, const int32_t *tokens, int n, float *logits) {
    model *m = s->m;
    if (!tokens || n < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_session_feed: no tokens");
    tensor lg = {0}, last = {0};
    attamba_status st = ATTAMBA_OK;
    int i = 0;
    if (s->pos[0] == 0) { /* prefill the whole prompt at once */
        RT_TRY(model_prefill_last(m, s, 0, tokens, n, logits ? &lg : NULL));
        i = n;
        if (logits) st = tensor_slice(&lg, 0, 0, 1, &last);
    }
    for (; i < n && !st; i++) {
        tensor_free(&lg);
        st = model_decode_step(m, s, &tokens[i], &lg);
        if (!st && i == n - 1 && logits) st = tensor_slice(&lg, 0, 0, 1, &last);
    }
    if (!st && logits) st = tensor_download(&last, logits);
    tensor_free(&last);
    tensor_free(&lg);
    return st;
}

int64_t attamba_session_position(const attamba_session *s) { return s->pos[0]; }

int64_t attamba_session_cache_bytes(const attamba_session *s) { return kv_cache_bytes_used(s, 0); }
