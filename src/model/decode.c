/* One decode step over the compressed KV cache: every sequence of the batch appends one token at
 * its own position, through the same layer program as the prefill (layer.c) with its step variants.
 * The host decides, for every layer at once, which tokens restart a segment and which keys are
 * stored; that table, the tokens and the positions go to the device in one upload, and the only
 * read back is the logits, by the caller. */
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "ops/ops.h"

attamba_status model_decode_step(model *m, kv_cache *c, const int32_t *tokens, tensor *logits) {
    const model_config *cfg = &m->cfg;
    memset(logits, 0, sizeof *logits);
    int B = c->B, L = cfg->n_layers;
    if (c->m != m) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "decode: the cache was made for another model");
    for (int b = 0; b < B; b++) {
        if (tokens[b] == ATTAMBA_TOKEN_SKIP) continue;
        if (tokens[b] < 0 || tokens[b] >= cfg->vocab_size)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "decode: token %d outside [0, %d)", tokens[b], cfg->vocab_size);
        if (c->pos[b] >= c->max_tokens)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "decode: sequence %d is at the cache's capacity (%lld tokens)",
                           b, (long long)c->max_tokens);
    }
    /* the step table: ids, positions, then per layer the first position of each token's segment and
     * the store slots (-1: not stored) */
    int32_t *host = c->step_host;
    boundary_spec bs = model_config_boundaries(cfg);
    for (int b = 0; b < B; b++) {
        int64_t p = c->pos[b];
        int skip = tokens[b] == ATTAMBA_TOKEN_SKIP;
        host[b] = skip ? 0 : tokens[b];
        host[B + b] = (int32_t)p;
        for (int l = 0; l < L; l++) {
            /* a token starts a segment at position 0 or right after a boundary; -1: skipped (the SSM step
             * leaves the sequence's state alone) */
            int64_t sf = 0;
            if (cfg->kind == MODEL_ATTAMBA)
                sf = skip ? -1 : p == 0 || boundary_is_boundary(&bs, l, L, p - 1) ? p : c->layers[l].seg_first[b];
            host[(2 + 2 * l) * B + b] = (int32_t)sf;
            int store = !skip && kv_cache_stores(c, l, p);
            int64_t n = c->layers[l].nb_host[b];
            if (store && n >= c->cap) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "kv cache full (%d rows)", c->cap);
            host[(3 + 2 * l) * B + b] = store ? (int32_t)n : -1;
        }
    }
    /* every stage of a layer split in turn (a whole model is one stage), the hidden state handed over */
    model *st = m;
    model_workspace *ws = NULL;
    for (int k = 0; st; k++, st = st->next) {
        model_workspace *prev = ws;
        ws = &c->ws[k];
        attamba_status s = model_workspace_carve(st, ws, B, 1, 1);
        if (!s) s = tensor_upload(&ws->step, host);
        if (!s && prev) s = tensor_transfer(&ws->h, &prev->h);
        layer_mode md = {.pos = &ws->pos, .cache = c, .decode = 1, .step = &ws->step};
        if (!s) s = model_trunk(st, &ws->ids, &ws->acts, 0, &md, &ws->xf);
        if (!s && !st->next) { /* the last stage: the output layer */
            s = tensor_scratch(st->ctx, logits, TENSOR_F32, 2, ((int64_t[]){B, cfg->vocab_size}));
            if (!s) s = model_linear(st, &ws->xf, st->output, 0, logits);
            if (s) tensor_free(logits);
        }
        RT_TRY(rt_fail_from(m->ctx, s, st->ctx));
    }
    for (int b = 0; b < B; b++) {
        if (tokens[b] == ATTAMBA_TOKEN_SKIP) continue;
        for (int l = 0; l < L; l++) {
            c->layers[l].nb_host[b] += host[(3 + 2 * l) * B + b] >= 0;
            if (cfg->kind == MODEL_ATTAMBA) c->layers[l].seg_first[b] = host[(2 + 2 * l) * B + b];
        }
        c->pos[b]++;
    }
    return ATTAMBA_OK;
}
