#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/core.h"

const char *model_kind_name(model_kind k) {
    static const char *names[] = {"attamba", "transformer", "transformer-swa"};
    return (unsigned)k < CORE_LEN(names) ? names[k] : "?";
}

void model_config_default(model_config *c) {
    memset(c, 0, sizeof *c);
    c->kind = MODEL_ATTAMBA;
    c->vocab_size = 258;
    c->dim = 64;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 4;
    c->head_dim = 16;
    c->ffn_dim = 128;
    c->ssm_inner = 32;
    c->ssm_heads = 4;
    c->ssm_state = 8;
    c->ssm_groups = 1;
    c->ssm_conv = 4;
    c->ssm_dt_bias = 0;
    c->a_init_min = 0.01f;
    c->a_init_max = 2.0f;
    c->chunk = 4;
    c->window = 4;
    c->pseudo = 0;
    c->boundaries = BOUNDARY_CYCLIC;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->tie_embeddings = 0;
    c->bos_id = 256;
    c->eos_id = 257;
}

attamba_status model_config_preset(const char *name, model_config *c, char *err, size_t err_size) {
    model_config_default(c);
    if (!strcmp(name, "tiny")) return ATTAMBA_OK;
    if (!strcmp(name, "small")) { /* the demo: byte-level, trains in minutes on two cores */
        c->dim = 128;
        c->n_layers = 4;
        c->n_heads = c->n_kv_heads = 4;
        c->head_dim = 32;
        c->ffn_dim = 384;
        c->ssm_inner = 64;
        c->ssm_heads = 4;
        c->ssm_state = 16;
        c->chunk = 8;
        c->window = 8;
        return ATTAMBA_OK;
    }
    if (!strcmp(name, "paper-60m")) { /* SPEC 5 */
        c->vocab_size = 32000;
        c->dim = 512;
        c->n_layers = 8;
        c->n_heads = c->n_kv_heads = 8;
        c->head_dim = 64;
        c->ffn_dim = 1536;
        c->ssm_inner = 256;
        c->ssm_heads = 8;
        c->ssm_state = 32;
        c->ssm_groups = 1;
        c->ssm_conv = 4;
        c->chunk = 8;
        c->window = 8;
        /* the paper's vocabulary size, but the byte tokenizer and its bos/eos, so that every command
         * accepts a model made from this preset (`attamba init --tokenizer` gives it a SentencePiece one) */
        c->bos_id = 256;
        c->eos_id = 257;
        return ATTAMBA_OK;
    }
    return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "unknown preset '%s' (tiny, small, paper-60m)", name);
}

#define FAIL(...) return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, __VA_ARGS__)

/* Every size is bounded so that no product of sizes (parameter counts, widths, cache rows) can
 * overflow int64, and each width fits the kernels' 32-bit indexing; the device's memory is checked
 * against the model's bytes when the model is made (model_create). */
attamba_status model_config_validate(const model_config *c, char *err, size_t err_size) {
    const struct { const char *name; int value, min, max; } pos[] = {
        {"vocab_size", c->vocab_size, 1, 1 << 24}, {"dim", c->dim, 1, 1 << 16},
        {"n_layers", c->n_layers, 1, 4096},        {"n_heads", c->n_heads, 1, 4096},
        {"n_kv_heads", c->n_kv_heads, 1, 4096},    {"head_dim", c->head_dim, 2, 256}, /* attention kernels' limit */
        {"ffn_dim", c->ffn_dim, 1, 1 << 20},       {"window", c->window, 0, 1 << 30},
        {"chunk", c->chunk, 1, 1 << 30},
    };
    for (size_t i = 0; i < CORE_LEN(pos); i++)
        if (pos[i].value < pos[i].min || pos[i].value > pos[i].max)
            FAIL("config field '%s': must be in [%d, %d], got %d", pos[i].name, pos[i].min, pos[i].max, pos[i].value);
    if ((int64_t)c->n_heads * c->head_dim > (1 << 16) || (int64_t)c->n_kv_heads * c->head_dim > (1 << 16))
        FAIL("config field 'n_heads': n_heads (%d) and n_kv_heads (%d) times head_dim (%d) must be <= 65536",
             c->n_heads, c->n_kv_heads, c->head_dim);
    if ((unsigned)c->kind > MODEL_TRANSFORMER_SWA) FAIL("config field 'kind': unknown kind %d", c->kind);
    if ((unsigned)c->weights > WEIGHTS_Q8) FAIL("config field 'weight_type': unknown type %d", c->weights);
    if (c->head_dim % 2) FAIL("config field 'head_dim': must be even for RoPE, got %d", c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        FAIL("config field 'n_kv_heads': %d does not divide n_heads = %d", c->n_kv_heads, c->n_heads);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) FAIL("config field 'rope_theta': must be > 0");
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps)) FAIL("config field 'norm_eps': must be > 0");
    if (c->bos_id < 0 || c->bos_id >= c->vocab_size) FAIL("config field 'bos_id': %d not in [0, vocab_size)", c->bos_id);
    if (c->eos_id < 0 || c->eos_id >= c->vocab_size) FAIL("config field 'eos_id': %d not in [0, vocab_size)", c->eos_id);
    if ((unsigned)c->tokenizer > TOKENIZER_SENTENCEPIECE)
        FAIL("config field 'tokenizer': unknown kind %d", c->tokenizer);
    if (c->tokenizer == TOKENIZER_BYTES && c->tokenizer_file[0])
        FAIL("config field 'tokenizer_file': only for \"tokenizer\": \"sentencepiece\"");
    const char *tf = c->tokenizer_file;
    int bad_name = !memchr(tf, 0, MODEL_TOKENIZER_FILE_MAX) || !tf[0] || strchr(tf, '/') || !strcmp(tf, ".") ||
                   !strcmp(tf, "..");
    if (c->tokenizer == TOKENIZER_SENTENCEPIECE && bad_name)
        FAIL("config field 'tokenizer_file': \"tokenizer\": \"sentencepiece\" needs the name of the tokenizer's "
             "file in the model directory (no '/'), got \"%.64s\"", tf);
    if (c->kind != MODEL_ATTAMBA) return ATTAMBA_OK;
    if (c->dim != c->n_kv_heads * c->head_dim)
        FAIL("config field 'dim': attamba keys are x + SSM(x), so dim (%d) must equal n_kv_heads * head_dim (%d * %d)",
             c->dim, c->n_kv_heads, c->head_dim);
    const struct { const char *name; int value, min, max; } ssm[] = {
        {"ssm_inner", c->ssm_inner, 1, 1 << 16}, {"ssm_heads", c->ssm_heads, 1, 4096}, {"ssm_state", c->ssm_state, 1, 1024},
        {"ssm_groups", c->ssm_groups, 1, 4096},  {"ssm_conv", c->ssm_conv, 0, 64}};
    for (size_t i = 0; i < CORE_LEN(ssm); i++)
        if (ssm[i].value < ssm[i].min || ssm[i].value > ssm[i].max)
            FAIL("config field '%s': must be in [%d, %d], got %d", ssm[i].name, ssm[i].min, ssm[i].max, ssm[i].value);
    if (c->ssm_conv == 1) FAIL("config field 'ssm_conv': 1 is not supported (0 = no conv, or a width >= 2)");
    if (c->ssm_inner % c->ssm_heads)
        FAIL("config field 'ssm_heads': %d does not divide ssm_inner = %d", c->ssm_heads, c->ssm_inner);
    if (c->ssm_heads % c->ssm_groups)
        FAIL("config field 'ssm_groups': %d does not divide ssm_heads = %d", c->ssm_groups, c->ssm_heads);
    if (!(c->a_init_min > 0) || !(c->a_init_max >= c->a_init_min))
        FAIL("config fields 'a_init_min'/'a_init_max': need 0 < min <= max");
    boundary_spec b = model_config_boundaries(c);
    char why[200];
    if (boundary_validate(&b, why, sizeof why)) FAIL("config field 'boundaries': %s", why);
    return ATTAMBA_OK;
}

boundary_spec model_config_boundaries(const model_config *c) {
    boundary_spec b = {.strategy = c->boundaries, .chunk = c->chunk, .seed = c->boundary_seed,
                       .positions = c->explicit_positions, .n_positions = c->n_explicit};
    return b;
}

/* ---- JSON ---- */

typedef enum { F_INT, F_FLOAT, F_BOOL } field_type;
typedef struct { const char *name; field_type type; size_t offset; } field;
#define FI(n) {#n, F_INT, offsetof(model_config, n)}
#define FF(n) {#n, F_FLOAT, offsetof(model_config, n)}
#define FB(n) {#n, F_BOOL, offsetof(model_config, n)}
static const field fields[] = {
    FI(vocab_size), FI(dim),        FI(n_layers),   FI(n_heads),    FI(n_kv_heads),  FI(head_dim),
    FI(ffn_dim),    FI(ssm_inner),  FI(ssm_heads),  FI(ssm_state),  FI(ssm_groups),  FI(ssm_conv),
    FB(ssm_dt_bias), FF(a_init_min), FF(a_init_max), FI(chunk),     FI(window),      FB(pseudo),
    FF(rope_theta), FF(norm_eps),   FB(tie_embeddings), FI(bos_id), FI(eos_id),
};

static attamba_status parse_boundaries(const cJSON *v, model_config *c, char *err, size_t err_size) {
    if (cJSON_IsString(v)) {
        boundary_spec b = {0};
        char why[200];
        if (!strcmp(v->valuestring, "explicit")) FAIL("config field 'boundaries': give explicit boundaries as a list");
        if (boundary_parse(v->valuestring, &b, why, sizeof why)) FAIL("config field 'boundaries': %s", why);
        c->boundaries = b.strategy;
        c->boundary_seed = b.seed;
        c->n_explicit = 0;
        return ATTAMBA_OK;
    }
    if (!cJSON_IsArray(v)) FAIL("config field 'boundaries': expected a strategy name or a list of positions");
    int n = cJSON_GetArraySize(v);
    if (n > MODEL_MAX_EXPLICIT) FAIL("config field 'boundaries': more than %d explicit positions", MODEL_MAX_EXPLICIT);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 || e->valuedouble > 1e15)
            FAIL("config field 'boundaries': element %d is not a non-negative integer", i);
        c->explicit_positions[i++] = (int64_t)e->valuedouble;
    }
    c->boundaries = BOUNDARY_EXPLICIT;
    c->n_explicit = n;
    return ATTAMBA_OK;
}

attamba_status model_config_from_json(const char *text, model_config *c, char *err, size_t err_size) {
    model_config_default(c);
    cJSON *root = cJSON_Parse(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        FAIL("config is not a JSON object (parse error near '%.20s')", cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    }
    attamba_status s = ATTAMBA_OK;
    const cJSON *v;
    cJSON_ArrayForEach(v, root) {
        const char *key = v->string;
        if (!strcmp(key, "kind")) {
            int k = -1;
            for (int i = 0; i <= MODEL_TRANSFORMER_SWA; i++)
                if (cJSON_IsString(v) && !strcmp(v->valuestring, model_kind_name((model_kind)i))) k = i;
            if (k < 0) {
                s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                                "config field 'kind': expected \"attamba\", \"transformer\" or \"transformer-swa\"");
                break;
            }
            c->kind = (model_kind)k;
            continue;
        }
        if (!strcmp(key, "boundaries")) {
            if ((s = parse_boundaries(v, c, err, err_size))) break;
            continue;
        }
        if (!strcmp(key, "weight_type")) {
            int t = cJSON_IsString(v) ? model_weight_type_parse(v->valuestring) : -1;
            if (t < 0) {
                s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                                "config field 'weight_type': expected \"f32\", \"f16\" or \"q8\"");
                break;
            }
            c->weights = (weight_type)t;
            continue;
        }
        if (!strcmp(key, "format") || !strcmp(key, "tokenizer") || !strcmp(key, "tokenizer_file")) {
            if (!cJSON_IsString(v)) {
                s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "config field '%s': expected a string", key);
                break;
            }
            if (!strcmp(key, "tokenizer")) {
                int k = -1;
                for (int i = 0; i <= TOKENIZER_SENTENCEPIECE; i++)
                    if (!strcmp(v->valuestring, model_tokenizer_name((tokenizer_kind)i))) k = i;
                if (k < 0) {
                    s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                                    "config field 'tokenizer': expected \"bytes\" or \"sentencepiece\", got \"%.64s\"",
                                    v->valuestring);
                    break;
                }
                c->tokenizer = (tokenizer_kind)k;
            } else if (!strcmp(key, "tokenizer_file")) {
                if (strlen(v->valuestring) >= MODEL_TOKENIZER_FILE_MAX) {
                    s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                                    "config field 'tokenizer_file': longer than %d bytes",
                                    MODEL_TOKENIZER_FILE_MAX - 1);
                    break;
                }
                snprintf(c->tokenizer_file, sizeof c->tokenizer_file, "%s", v->valuestring);
                snprintf(c->tokenizer_path, sizeof c->tokenizer_path, "%s", v->valuestring);
            }
            continue;
        }
        const field *f = NULL;
        for (size_t i = 0; i < CORE_LEN(fields); i++)
            if (!strcmp(key, fields[i].name)) f = &fields[i];
        if (!f) {
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "config field '%s': unknown field", key);
            break;
        }
        char *dst = (char *)c + f->offset;
        if (f->type == F_BOOL) {
            if (!cJSON_IsBool(v)) {
                s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "config field '%s': expected true or false", key);
                break;
            }
            *(int *)dst = cJSON_IsTrue(v);
        } else if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "config field '%s': expected a number", key);
            break;
        } else if (f->type == F_INT) {
            double d = v->valuedouble;
            if (d != floor(d) || d < -2147483647.0 || d > 2147483647.0) {
                s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "config field '%s': expected an integer, got %g", key, d);
                break;
            }
            *(int *)dst = (int)d;
        } else {
            *(float *)dst = (float)v->valuedouble;
        }
    }
    cJSON_Delete(root);
    if (s) return s;
    return model_config_validate(c, err, err_size);
}

attamba_status model_config_load(const char *path, model_config *c, char *err, size_t err_size) {
    FILE *f = core_fopen_regular(path);
    if (!f) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot open config %s%s", path,
                               errno == EINVAL ? ": not a regular file" : "");
    char *text = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n >= 0 && n < (1 << 24) && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1))) {
        if (fread(text, 1, (size_t)n, f) != (size_t)n) {
            free(text);
            text = NULL;
        } else {
            text[n] = 0;
        }
    }
    fclose(f);
    if (!text) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot read config %s", path);
    char why[400];
    attamba_status s = model_config_from_json(text, c, why, sizeof why);
    free(text);
    if (s) return core_errbuf(err, err_size, s, "%s: %s", path, why);
    if (c->tokenizer == TOKENIZER_SENTENCEPIECE) { /* the tokenizer's file lies beside the config */
        const char *slash = strrchr(path, '/');
        int dir = slash ? (int)(slash - path) : 0;
        int w = slash ? snprintf(c->tokenizer_path, sizeof c->tokenizer_path, "%.*s/%s", dir, path, c->tokenizer_file)
                      : snprintf(c->tokenizer_path, sizeof c->tokenizer_path, "%s", c->tokenizer_file);
        if (w < 0 || w >= (int)sizeof c->tokenizer_path)
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "%s: the tokenizer's path is too long", path);
    }
    return ATTAMBA_OK;
}

static const char *const weight_type_names[] = {"f32", "f16", "q8"};

const char *model_weight_type_name(weight_type t) {
    return (unsigned)t < CORE_LEN(weight_type_names) ? weight_type_names[t] : "?";
}

const char *model_tokenizer_name(tokenizer_kind k) {
    return k == TOKENIZER_BYTES ? "bytes" : k == TOKENIZER_SENTENCEPIECE ? "sentencepiece" : "?";
}

int model_weight_type_parse(const char *name) {
    for (int i = 0; i < (int)CORE_LEN(weight_type_names); i++)
        if (!strcmp(name, weight_type_names[i])) return i;
    return -1;
}

char *model_config_to_json(const model_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "attamba-config-1");
    cJSON_AddStringToObject(o, "kind", model_kind_name(c->kind));
    cJSON_AddStringToObject(o, "tokenizer", model_tokenizer_name(c->tokenizer));
    if (c->tokenizer == TOKENIZER_SENTENCEPIECE) cJSON_AddStringToObject(o, "tokenizer_file", c->tokenizer_file);
    cJSON_AddStringToObject(o, "weight_type", model_weight_type_name(c->weights));
    for (size_t i = 0; i < CORE_LEN(fields); i++) {
        const char *src = (const char *)c + fields[i].offset;
        if (fields[i].type == F_BOOL) cJSON_AddBoolToObject(o, fields[i].name, *(const int *)src);
        else if (fields[i].type == F_INT) cJSON_AddNumberToObject(o, fields[i].name, *(const int *)src);
        else cJSON_AddNumberToObject(o, fields[i].name, (double)*(const float *)src);
    }
    if (c->boundaries == BOUNDARY_EXPLICIT) {
        cJSON *a = cJSON_AddArrayToObject(o, "boundaries");
        for (int i = 0; i < c->n_explicit; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)c->explicit_positions[i]));
    } else if (c->boundaries == BOUNDARY_RANDOM) {
        char s[48];
        snprintf(s, sizeof s, "random:%llu", (unsigned long long)c->boundary_seed);
        cJSON_AddStringToObject(o, "boundaries", s);
    } else {
        cJSON_AddStringToObject(o, "boundaries", boundary_strategy_name(c->boundaries));
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

attamba_status model_config_save(const model_config *c, const char *path, char *err, size_t err_size) {
    char *text = model_config_to_json(c);
    int ok = text && core_write_file_atomic(path, text) == 0;
    free(text);
    return ok ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write config %s", path);
}

int64_t model_config_param_count(const model_config *c) {
    int64_t d = c->dim, V = c->vocab_size, qw = (int64_t)c->n_heads * c->head_dim,
            kvw = (int64_t)c->n_kv_heads * c->head_dim, Fd = c->ffn_dim;
    int64_t layer = d /* attention_norm */ + qw * d /* wq */ + d * qw /* wo */ + d /* ffn_norm */ + 3 * Fd * d;
    if (c->kind == MODEL_ATTAMBA) {
        int64_t E = c->ssm_inner, nh = c->ssm_heads, GN = (int64_t)c->ssm_groups * c->ssm_state;
        int64_t ssm = (2 * E + 2 * GN + nh) * d + (E + 2 * GN) * c->ssm_conv + (c->ssm_dt_bias ? nh : 0) + 2 * nh + E + E * d;
        layer += 2 * ssm;
    } else {
        layer += 2 * kvw * d;
    }
    return V * d + c->n_layers * layer + d + (c->tie_embeddings ? 0 : V * d);
}

int64_t model_config_cache_bytes(const model_config *c, int64_t tokens, int store_bytes) {
    const int64_t f32 = 4;
    int64_t kvw = (int64_t)c->n_kv_heads * c->head_dim, total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int64_t stored, ring; /* rows of the store (store_bytes per element) and of the f32 ring */
        if (c->kind == MODEL_TRANSFORMER || (c->kind == MODEL_ATTAMBA && c->pseudo)) {
            stored = tokens, ring = 0;
        } else if (c->kind == MODEL_TRANSFORMER_SWA) {
            stored = 0, ring = CORE_MIN(tokens, (int64_t)c->window + 1);
        } else {
            boundary_spec b = model_config_boundaries(c);
            stored = tokens > 0 ? boundary_positions(&b, l, c->n_layers, tokens, NULL, 0) : 0;
            ring = CORE_MIN(tokens, (int64_t)c->window + 1); /* the ring never outgrows the sequence */
        }
        total += (stored * store_bytes + ring * f32) * 2 * kvw;
        if (c->kind == MODEL_ATTAMBA) {
            int64_t conv_ch = c->ssm_inner + 2 * (int64_t)c->ssm_groups * c->ssm_state;
            int64_t state = (int64_t)c->ssm_inner * c->ssm_state; /* nh * p * N */
            total += 2 * (CORE_MAX(c->ssm_conv - 1, 0) * conv_ch + state) * f32;
        }
    }
    return total;
}

double model_config_key_visits(const model_config *c, int64_t T) {
    if (T < 1) return 0;
    double total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (c->kind == MODEL_TRANSFORMER || (c->kind == MODEL_ATTAMBA && c->pseudo)) {
            total += (double)T * (double)(T + 1) / 2;
            continue;
        }
        int64_t L = c->window;
        for (int64_t t = 0; t < T; t++) total += (double)CORE_MIN(t, L) + 1; /* the window */
        if (c->kind != MODEL_ATTAMBA) continue;
        /* plus every boundary s < t - L */
        boundary_spec b = model_config_boundaries(c);
        int64_t nb = boundary_positions(&b, l, c->n_layers, T, NULL, 0);
        int64_t *pos = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *pos);
        if (!pos) return -1;
        boundary_positions(&b, l, c->n_layers, T, pos, nb);
        for (int64_t i = 0; i < nb; i++) total += (double)CORE_MAX(0, T - (pos[i] + L + 1)); /* queries t > s + L */
        free(pos);
    }
    return total / ((double)T * c->n_layers);
}

double model_config_attention_flops(const model_config *c, int64_t T) {
    return 4.0 * c->n_heads * c->head_dim * model_config_key_visits(c, T) * c->n_layers;
}
