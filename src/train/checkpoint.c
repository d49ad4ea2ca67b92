#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "model/safetensors.h"

static char *read_small(const char *path) {
    FILE *f = core_fopen_regular(path);
    if (!f) return NULL;
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

static int write_small(const char *path, const char *text) {
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    return ok;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = core_strdup_printf("%s/%s", dir, e->d_name);
        if (p) remove(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

static char *hparams_json(const train_hparams *h, const train_progress *p) {
    cJSON *o = cJSON_CreateObject();
    char s[64];
    cJSON_AddStringToObject(o, "format", "attamba-trainer-1");
    cJSON_AddNumberToObject(o, "step", (double)p->step);
    cJSON_AddNumberToObject(o, "tokens", (double)p->tokens);
    cJSON_AddNumberToObject(o, "seconds", p->seconds);
    snprintf(s, sizeof s, "%llu", (unsigned long long)p->seed);
    cJSON_AddStringToObject(o, "seed", s);
    cJSON *r = cJSON_AddArrayToObject(o, "rng");
    for (int i = 0; i < 4; i++) { /* as strings: JSON numbers cannot hold 64 bits */
        snprintf(s, sizeof s, "%llu", (unsigned long long)p->rng.s[i]);
        cJSON_AddItemToArray(r, cJSON_CreateString(s));
    }
    cJSON_AddNumberToObject(o, "batch", h->batch);
    cJSON_AddNumberToObject(o, "seq", h->seq);
    cJSON_AddNumberToObject(o, "accum", h->accum);
    cJSON_AddNumberToObject(o, "lr", h->lr);
    cJSON_AddNumberToObject(o, "min_lr", h->min_lr);
    cJSON_AddNumberToObject(o, "warmup", (double)h->warmup);
    cJSON_AddNumberToObject(o, "steps", (double)h->steps);
    cJSON_AddNumberToObject(o, "beta1", h->beta1);
    cJSON_AddNumberToObject(o, "beta2", h->beta2);
    cJSON_AddNumberToObject(o, "eps", h->eps);
    cJSON_AddNumberToObject(o, "weight_decay", h->weight_decay);
    cJSON_AddNumberToObject(o, "clip", h->clip);
    cJSON_AddNumberToObject(o, "ignore_id", h->ignore_id);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

attamba_status checkpoint_save(const char *out, trainer *t, const train_hparams *h, const train_progress *p,
                               int keep, char *err, size_t err_size) {
    model *m = trainer_model(t);
    char name[64];
    snprintf(name, sizeof name, "ckpt-%09lld", (long long)p->step);
    char *final = core_strdup_printf("%s/%s", out, name), *tmp = core_strdup_printf("%s/%s.tmp", out, name);
    char *opt = core_strdup_printf("%s/optimizer.safetensors", tmp), *tj = core_strdup_printf("%s/trainer.json", tmp);
    char *latest = core_strdup_printf("%s/latest", out), *json = hparams_json(h, p);
    attamba_status s = final && tmp && opt && tj && latest && json
                           ? ATTAMBA_OK
                           : core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s) {
        remove_dir(tmp); /* a leftover from a run killed while saving */
        if (model_save(m, tmp)) s = core_errbuf(err, err_size, ATTAMBA_ERR_IO, "%s", attamba_context_last_error(m->ctx));
    }
    if (!s) { /* the moments, as two flat tensors */
        int64_t n = m->w.numel;
        float *host = malloc((size_t)n * 2 * sizeof *host);
        if (!host) s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        if (!s && (tensor_download(trainer_moment(t, 0), host) || tensor_download(trainer_moment(t, 1), host + n)))
            s = core_errbuf(err, err_size, ATTAMBA_ERR_OPENCL, "%s", m->ctx->err);
        st_entry e[2] = {{"m", 1, &n, host, ST_F32}, {"v", 1, &n, host + n, ST_F32}};
        if (!s) s = st_write(opt, e, 2, NULL, err, err_size);
        free(host);
    }
    if (!s && !write_small(tj, json)) s = core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write %s", tj);
    if (!s) {
        remove_dir(final); /* the same step saved twice (an interrupt right after a periodic save) */
        if (rename(tmp, final) != 0) s = core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot rename %s", tmp);
    }
    char *line = core_strdup_printf("%s\n", name);
    if (!s && !write_small(latest, line)) s = core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write %s", latest);
    free(line);
    if (!s && keep > 0) { /* drop all but the newest `keep` */
        DIR *d = opendir(out);
        char **names = NULL;
        int n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (!strncmp(e->d_name, "ckpt-", 5) && !strstr(e->d_name, ".tmp")) {
                char **g = realloc(names, (size_t)(n + 1) * sizeof *names);
                if (!g) break;
                names = g;
                names[n++] = strdup(e->d_name);
            }
        if (d) closedir(d);
        for (int i = 0; i < n; i++) {
            int newer = 0;
            for (int j = 0; j < n; j++) newer += names[j] && names[i] && strcmp(names[j], names[i]) > 0;
            if (newer >= keep && names[i]) {
                char *p2 = core_strdup_printf("%s/%s", out, names[i]);
                if (p2) remove_dir(p2);
                free(p2);
            }
        }
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
    }
    if (s && tmp) remove_dir(tmp);
    free(final);
    free(tmp);
    free(opt);
    free(tj);
    free(latest);
    free(json);
    return s;
}

int checkpoint_exists(const char *out) {
    char *p = core_strdup_printf("%s/latest", out);
    int ok = p && access(p, R_OK) == 0;
    free(p);
    return ok;
}

static char *latest_dir(const char *out) {
    char *p = core_strdup_printf("%s/latest", out), *name = p ? read_small(p) : NULL;
    free(p);
    if (!name) return NULL;
    name[strcspn(name, "\r\n")] = 0;
    char *dir = strchr(name, '/') || !*name ? NULL : core_strdup_printf("%s/%s", out, name);
    free(name);
    return dir;
}

/* Field k of o as a number in [lo, hi] (so every cast below is defined); clears *ok otherwise. */
static double num(const cJSON *o, const char *k, double lo, double hi, int *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) {
        *ok = 0;
        return lo;
    }
    return v->valuedouble;
}

attamba_status checkpoint_parse_state(const char *text, train_hparams *h, train_progress *p, char *err,
                                      size_t err_size) {
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    if (!o) return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "not JSON");
    int ok = 1;
    const double I64 = 9.2e18, I32 = 2147483647.0, F = 3.0e38;
    memset(p, 0, sizeof *p);
    p->step = (int64_t)num(o, "step", 0, I64, &ok);
    p->tokens = (int64_t)num(o, "tokens", 0, I64, &ok);
    p->seconds = num(o, "seconds", 0, 1e18, &ok);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed"), *rng = cJSON_GetObjectItemCaseSensitive(o, "rng");
    ok = ok && cJSON_IsString(seed) && cJSON_IsArray(rng) && cJSON_GetArraySize(rng) == 4;
    if (ok) p->seed = strtoull(seed->valuestring, NULL, 10);
    for (int i = 0; ok && i < 4; i++) {
        const cJSON *e = cJSON_GetArrayItem(rng, i);
        ok = cJSON_IsString(e);
        if (ok) p->rng.s[i] = strtoull(e->valuestring, NULL, 10);
    }
    h->batch = (int)num(o, "batch", 1, I32, &ok);
    h->seq = (int)num(o, "seq", 2, I32, &ok);
    h->accum = (int)num(o, "accum", 1, I32, &ok);
    h->lr = (float)num(o, "lr", 0, F, &ok);
    h->min_lr = (float)num(o, "min_lr", 0, F, &ok);
    h->warmup = (int64_t)num(o, "warmup", 0, I64, &ok);
    h->steps = (int64_t)num(o, "steps", 1, I64, &ok);
    h->beta1 = (float)num(o, "beta1", 0, 1, &ok);
    h->beta2 = (float)num(o, "beta2", 0, 1, &ok);
    h->eps = (float)num(o, "eps", 0, F, &ok);
    h->weight_decay = (float)num(o, "weight_decay", 0, F, &ok);
    h->clip = (float)num(o, "clip", 0, F, &ok);
    h->ignore_id = (int)num(o, "ignore_id", -I32, I32, &ok);
    cJSON_Delete(o);
    return ok ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "missing or malformed fields");
}

attamba_status checkpoint_load(rt_ctx *ctx, const char *out, model **m, train_hparams *h, train_progress *p,
                               char *err, size_t err_size) {
    *m = NULL;
    char *dir = latest_dir(out);
    if (!dir) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "no checkpoint in %s (no readable 'latest')", out);
    char *tj = core_strdup_printf("%s/trainer.json", dir), *text = tj ? read_small(tj) : NULL;
    char why[200];
    attamba_status s = text ? checkpoint_parse_state(text, h, p, why, sizeof why) : ATTAMBA_ERR_FORMAT;
    if (s) core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s: %s", tj ? tj : dir, text ? why : "missing");
    if (!s && model_load(ctx, dir, m)) s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s", ctx->err);
    free(text);
    free(tj);
    free(dir);
    return s;
}

attamba_status checkpoint_load_moments(const char *out, trainer *t, char *err, size_t err_size) {
    char *dir = latest_dir(out), *path = dir ? core_strdup_printf("%s/optimizer.safetensors", dir) : NULL;
    free(dir);
    if (!path) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "no checkpoint in %s", out);
    st_file f;
    attamba_status s = st_open(path, &f, err, err_size);
    if (!s) {
        const st_tensor *mt = st_find(&f, "m"), *vt = st_find(&f, "v");
        tensor *mm = trainer_moment(t, 0), *vv = trainer_moment(t, 1);
        int64_t n = tensor_numel(mm);
        float *host = malloc((size_t)n * sizeof *host);
        if (!mt || !vt || st_numel(mt) != n || st_numel(vt) != n)
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s: moments missing or of the wrong size", path);
        else if (!host)
            s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        if (!s) {
            st_read_f32(&f, mt, host);
            s = tensor_upload(mm, host);
        }
        if (!s) {
            st_read_f32(&f, vt, host);
            s = tensor_upload(vv, host);
        }
        free(host);
        st_close(&f);
    }
    free(path);
    return s;
}
