/* The public config and model-file API (include/attamba/attamba.h): configs loaded, changed, described
 * and costed without a device, their device memory measured, and model directories written (a seeded
 * random model, or a quantized copy) from the host alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "kv_cache.h"
#include "tokenizer.h"
#include "weights.h"

/* ---- configs ---- */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

attamba_status attamba_config_load(const char *spec, attamba_config **out, char *errbuf, size_t errbuf_size) {
    if (!out) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_config_load: NULL out");
    *out = NULL;
    if (!spec || !*spec)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_config_load: no config given");
    attamba_config *c = calloc(1, sizeof *c);
    if (!c) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    struct stat st;
    attamba_status s;
    if (ends_with(spec, ".json")) {
        s = model_config_load(spec, &c->c, errbuf, errbuf_size);
    } else if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) { /* a model directory: its config.json */
        char *path = core_strdup_printf("%s/config.json", spec);
        s = path ? model_config_load(path, &c->c, errbuf, errbuf_size)
                 : core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        free(path);
    } else if (strchr(spec, '/')) { /* a path, but neither a config file nor a directory */
        s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_IO,
                        "%s: not a config file (.json) or a model directory", spec);
    } else {
        s = model_config_preset(spec, &c->c, errbuf, errbuf_size);
    }
    if (s) {
        free(c);
        return s;
    }
    *out = c;
    return ATTAMBA_OK;
}

void attamba_config_destroy(attamba_config *c) { free(c); }

/* Sets key to v in root (replacing it, or adding it); takes v. */
static void put(cJSON *root, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(root, key)) cJSON_ReplaceItemInObjectCaseSensitive(root, key, v);
    else cJSON_AddItemToObject(root, key, v);
}

attamba_status attamba_config_set(attamba_config *c, const char *key, const char *value, char *errbuf,
                                  size_t errbuf_size) {
    if (!c || (key && !*key) || !value)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_config_set: NULL config or value");
    /* the config as JSON with the fields replaced, read back whole: the loader's checks and messages
     * apply, and the config only changes when the result is valid */
    char *text = model_config_to_json(&c->c);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON *v = cJSON_Parse(value); /* JSON text, else a bare word taken as a string */
    if (!v && key) v = cJSON_CreateString(value);
    const char *what = key ? key : "fields";
    attamba_status s = ATTAMBA_OK;
    if (!key && !cJSON_IsObject(v)) {
        s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG,
                        "attamba_config_set: without a key, the value must be a JSON object, not '%.200s'", value);
    } else if (!root || !v) {
        s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    } else {
        int tokenizer_changes = 0;
        if (key) {
            put(root, key, v);
            tokenizer_changes = !strcmp(key, "tokenizer_file") || !strcmp(key, "tokenizer");
            v = NULL; /* root owns it now */
        } else {
            while (v->child) {
                cJSON *f = cJSON_DetachItemViaPointer(v, v->child);
                tokenizer_changes |= !strcmp(f->string, "tokenizer_file") || !strcmp(f->string, "tokenizer");
                char *name = strdup(f->string);
                if (!name) {
                    cJSON_Delete(f);
                    break;
                }
                put(root, name, f);
                free(name);
            }
        }
        text = cJSON_PrintUnformatted(root);
        model_config next;
        char why[600];
        if (!text) s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        else if ((s = model_config_from_json(text, &next, why, sizeof why)))
            s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "%s = %.200s: %s", what, value, why);
        free(text);
        if (!s) {
            /* the tokenizer file's location is not part of the JSON: it stays unless the file changes */
            if (!tokenizer_changes) memcpy(next.tokenizer_path, c->c.tokenizer_path, sizeof next.tokenizer_path);
            if (!(s = model_config_validate(&next, why, sizeof why))) c->c = next;
            else core_errbuf(errbuf, errbuf_size, s, "%s = %.200s: %s", what, value, why);
        }
    }
    cJSON_Delete(v);
    cJSON_Delete(root);
    return s;
}

attamba_status attamba_config_use_tokenizer(attamba_config *c, const char *path, char *errbuf, size_t errbuf_size) {
    if (!c || !path)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_config_use_tokenizer: NULL argument");
    model_config next = c->c;
    tokenizer *t = NULL;
    RT_TRY(tokenizer_load_sentencepiece(path, &t, errbuf, errbuf_size));
    next.tokenizer = TOKENIZER_SENTENCEPIECE;
    next.vocab_size = t->vocab_size, next.bos_id = t->bos_id, next.eos_id = t->eos_id;
    tokenizer_destroy(t);
    snprintf(next.tokenizer_file, sizeof next.tokenizer_file, "tokenizer.model");
    if (snprintf(next.tokenizer_path, sizeof next.tokenizer_path, "%s", path) >= (int)sizeof next.tokenizer_path)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "the tokenizer's path is too long");
    RT_TRY(model_config_validate(&next, errbuf, errbuf_size));
    c->c = next;
    return ATTAMBA_OK;
}

char *attamba_config_json(const attamba_config *c) { return c ? model_config_to_json(&c->c) : NULL; }

void attamba_config_describe(const attamba_config *c, attamba_config_info *out) {
    const model_config *m = &c->c;
    memset(out, 0, sizeof *out);
    snprintf(out->kind, sizeof out->kind, "%s", model_kind_name(m->kind));
    const char *b = boundary_strategy_name(m->boundaries);
    snprintf(out->boundaries, sizeof out->boundaries, "%s", b ? b : "?");
    snprintf(out->tokenizer, sizeof out->tokenizer, "%s", model_tokenizer_name(m->tokenizer));
    snprintf(out->weights, sizeof out->weights, "%s", model_weight_type_name(m->weights));
    out->vocab_size = m->vocab_size, out->d_model = m->dim, out->n_layers = m->n_layers;
    out->n_heads = m->n_heads, out->n_kv_heads = m->n_kv_heads, out->head_dim = m->head_dim;
    out->chunk = m->chunk, out->window = m->window, out->pseudo = m->pseudo;
    out->bos = m->bos_id, out->eos = m->eos_id;
    out->parameters = model_config_param_count(m);
}

void attamba_config_estimate_with(const attamba_config *c, int64_t context, attamba_cache_type cache_type,
                                  attamba_config_cost *out) {
    model_config full = c->c; /* a full-attention cache of the same width and depth */
    full.kind = MODEL_TRANSFORMER;
    full.pseudo = 0;
    int es = cache_type == ATTAMBA_CACHE_F16 ? 2 : 4;
    out->cache_bytes = model_config_cache_bytes(&c->c, context, es);
    out->cache_bytes_full = model_config_cache_bytes(&full, context, es);
    out->key_visits = model_config_key_visits(&c->c, context);
    out->attention_flops = model_config_attention_flops(&c->c, context);
}

void attamba_config_estimate(const attamba_config *c, int64_t context, attamba_config_cost *out) {
    attamba_config_estimate_with(c, context, ATTAMBA_CACHE_F32, out);
}

attamba_status attamba_config_measure_memory(attamba_context *ctx, const attamba_config *c, int batch,
                                             int64_t context, attamba_memory_report *out) {
    return attamba_config_measure_memory_with(ctx, c, batch, context, ATTAMBA_CACHE_F32, out);
}

attamba_status attamba_config_measure_memory_with(attamba_context *ctx, const attamba_config *c, int batch,
                                                  int64_t context, attamba_cache_type cache_type,
                                                  attamba_memory_report *out) {
    static const char *op = "attamba_config_measure_memory";
    if (!c || !out) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL config or report", op);
    tensor_dtype store;
    RT_TRY(kv_cache_store_type(ctx, op, cache_type, &store));
    if (batch < 1 || context < 1 || context > INT32_MAX - 1 || (int64_t)batch * context > ((int64_t)1 << 40))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: batch %d x context %lld", op, batch, (long long)context);
    memset(out, 0, sizeof *out);
    const model_config *cfg = &c->c;
    int B = batch;
    int64_t T = context;
    model *m = NULL;
    kv_cache *cache = NULL;
    int32_t *tok = malloc((size_t)B * (size_t)T * sizeof *tok);
    uint64_t base = 0, after_prefill = 0, peak_prefill = 0, peak_decode = 0;
    attamba_status s = tok ? ATTAMBA_OK : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    if (!s) s = model_create(ctx, cfg, &m);
    if (!s) s = model_init_random(m, 1);
    if (!s) { /* a prefill of B x T, the peak counted from the weights alone */
        for (int64_t i = 0; i < (int64_t)B * T; i++) tok[i] = (int32_t)((i * 7919) % cfg->vocab_size);
        attamba_context_memory(ctx, &base, NULL);
        ctx->mem_peak = base;
        tensor lg;
        s = model_forward(m, tok, B, (int)T, &lg);
        if (!s) tensor_free(&lg);
        attamba_context_memory(ctx, &after_prefill, &peak_prefill);
    }
    if (!s) { /* then a decode step of B sequences at position T, the peak counted from there */
        ctx->mem_peak = after_prefill;
        tensor lg;
        s = kv_cache_create(m, B, T + 1, store, &cache);
        if (!s) s = kv_cache_fill_synthetic(cache, T);
        if (!s) s = model_decode_step(m, cache, tok, &lg);
        if (!s) tensor_free(&lg);
        attamba_context_memory(ctx, NULL, &peak_decode);
    }
    if (!s) {
        out->weights = base;
        out->prefill_arena = (uint64_t)tensor_arena_bytes(&m->ws->arena);
        out->prefill_peak = peak_prefill;
        out->kv_cache = (uint64_t)kv_cache_bytes_allocated(cache);
        out->decode_arena = (uint64_t)tensor_arena_bytes(&cache->ws[0].arena);
        out->decode_peak = peak_decode;
        out->idle_scratch = ctx->mem_pool_idle;
    }
    kv_cache_destroy(cache);
    model_destroy(m);
    free(tok);
    return s;
}

/* ---- model files ---- */

/* A sentencepiece config's tokenizer file, checked against the config, copied into dir (which then holds
 * a self-contained model). Nothing for a byte config. */
static attamba_status copy_tokenizer(const model_config *cfg, const char *dir, char *errbuf, size_t errbuf_size) {
    if (cfg->tokenizer == TOKENIZER_BYTES) return ATTAMBA_OK;
    void *file = NULL;
    size_t size = 0;
    tokenizer *t = NULL;
    attamba_status s = tokenizer_file_read(cfg, &file, &size, errbuf, errbuf_size);
    if (!s) s = tokenizer_for_config(cfg, file, size, &t, errbuf, errbuf_size);
    if (!s) s = tokenizer_file_write(cfg, dir, file, size, errbuf, errbuf_size);
    tokenizer_destroy(t);
    free(file);
    return s;
}

attamba_status attamba_model_create_file(const attamba_config *c, uint64_t seed, const char *dir, char *errbuf,
                                         size_t errbuf_size) {
    if (!c || !dir || !*dir)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG,
                           "attamba_model_create_file: NULL config or dir");
    const model_config *cfg = &c->c;
    weight_info *list = NULL;
    int n = 0;
    if (weights_list(cfg, &list, &n))
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    int64_t numel = list[n - 1].offset + weight_numel(&list[n - 1]);
    float *host = malloc((size_t)numel * sizeof *host);
    char *wpath = core_strdup_printf("%s/model.safetensors", dir), *cpath = core_strdup_printf("%s/config.json", dir);
    attamba_status s = ATTAMBA_OK;
    if (!host || !wpath || !cpath) {
        s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %lld parameters",
                        (long long)numel);
    } else {
        weights_init_host(cfg, list, n, seed, host); /* what model_init_random uploads for this seed */
        if (core_mkdirs(dir) != 0) s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_IO, "cannot create %s", dir);
        if (!s) s = weights_save_host(list, n, host, wpath, errbuf, errbuf_size);
        if (!s) s = copy_tokenizer(cfg, dir, errbuf, errbuf_size);
        if (!s) s = model_config_save(cfg, cpath, errbuf, errbuf_size); /* last: a directory with it is whole */
    }
    free(wpath);
    free(cpath);
    free(host);
    free(list);
    return s;
}

attamba_status attamba_model_quantize(const char *in_dir, const char *out_dir, const char *type, int64_t *n_converted,
                                      int64_t *n_f32, char *errbuf, size_t errbuf_size) {
    if (n_converted) *n_converted = 0;
    if (n_f32) *n_f32 = 0;
    if (!in_dir || !out_dir || !type)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_model_quantize: NULL argument");
    int wt = model_weight_type_parse(type);
    if (wt < 0)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "bad weight type %.32s (f32, f16 or q8)",
                           type);
    model_config cfg;
    char *cin = core_strdup_printf("%s/config.json", in_dir), *win = core_strdup_printf("%s/model.safetensors", in_dir);
    char *cout = core_strdup_printf("%s/config.json", out_dir);
    char *wout = core_strdup_printf("%s/model.safetensors", out_dir);
    float *host = NULL;
    weight_info *list = NULL;
    int n = 0;
    attamba_status s = ATTAMBA_OK;
    if (!cin || !win || !cout || !wout)
        s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s) s = model_config_load(cin, &cfg, errbuf, errbuf_size);
    if (!s) s = weights_read_host(&cfg, win, &host, errbuf, errbuf_size);
    if (!s) {
        cfg.weights = (weight_type)wt;
        if (weights_list(&cfg, &list, &n))
            s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    /* the matrices stored in low precision must be finite (a NaN or inf has no f16 or q8 block) */
    int64_t low = 0, kept = 0;
    for (int i = 0; i < n && !s; i++) {
        int64_t numel = weight_numel(&list[i]);
        if (list[i].dtype == TENSOR_F32) {
            kept += numel;
            continue;
        }
        low += numel;
        for (int64_t j = 0; j < numel && !s; j++)
            if (!isfinite(host[list[i].offset + j]))
                s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_FORMAT,
                                "%s: tensor '%s' has a non-finite value at %lld", win, list[i].name, (long long)j);
    }
    if (!s && core_mkdirs(out_dir) != 0)
        s = core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_IO, "cannot create %s", out_dir);
    if (!s) s = weights_save_host(list, n, host, wout, errbuf, errbuf_size);
    if (!s) s = copy_tokenizer(&cfg, out_dir, errbuf, errbuf_size);
    if (!s) s = model_config_save(&cfg, cout, errbuf, errbuf_size);
    if (!s && n_converted) *n_converted = low;
    if (!s && n_f32) *n_f32 = kept;
    free(host);
    free(list);
    free(cin);
    free(win);
    free(cout);
    free(wout);
    return s;
}

attamba_status attamba_model_get_config(const attamba_model *m, attamba_config **out) {
    if (!out) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_get_config: NULL out");
    *out = calloc(1, sizeof **out);
    if (!*out) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "attamba_model_get_config: out of host memory");
    (*out)->c = m->cfg;
    return ATTAMBA_OK;
}
