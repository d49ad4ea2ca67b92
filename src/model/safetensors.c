#include <errno.h>
#include <cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "safetensors.h"
#include "tensor/quant.h"

#define FAIL(...) core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, __VA_ARGS__)

static size_t dtype_size(st_dtype t) { return t == ST_F32 ? 4 : t == ST_I8 ? 1 : 2; }
static const char *const dtype_names[] = {"F32", "F16", "BF16", "I8"};

static int cmp_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static attamba_status parse_header(st_file *f, const char *path, const char *json, size_t len, char *err,
                                   size_t err_size) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return FAIL("%s: the header is not a JSON object", path);
    }
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) if (strcmp(e->string, "__metadata__")) n++;
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) {
        cJSON_Delete(root);
        return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    attamba_status s = ATTAMBA_OK;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) continue;
        st_tensor *t = &f->tensors[f->n_tensors];
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(e, "shape"),
                    *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
            cJSON_GetArraySize(off) != 2) {
            s = FAIL("%s: tensor '%s': needs dtype, shape and data_offsets [begin, end]", path, e->string);
            break;
        }
        int known = 0;
        for (int i = 0; i < (int)CORE_LEN(dtype_names) && !known; i++)
            if (!strcmp(dt->valuestring, dtype_names[i])) t->dtype = (st_dtype)i, known = 1;
        if (!known) {
            s = FAIL("%s: tensor '%s': unsupported dtype %s (F32, F16, BF16, I8)", path, e->string, dt->valuestring);
            break;
        }
        t->ndim = cJSON_GetArraySize(sh);
        if (t->ndim > 8) {
            s = FAIL("%s: tensor '%s': %d dims", path, e->string, t->ndim);
            break;
        }
        double numel = 1;
        int i = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, sh) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != floor(d->valuedouble) || d->valuedouble > 1e12) {
                s = FAIL("%s: tensor '%s': bad shape", path, e->string);
                break;
            }
            t->shape[i++] = (int64_t)d->valuedouble;
            numel *= d->valuedouble;
        }
        if (s) break;
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
        if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) || b < 0 ||
            en < b || b != floor(b) || en != floor(en) || en > (double)f->data_size) {
            s = FAIL("%s: tensor '%s': data_offsets [%.0f, %.0f] outside the %llu data bytes (truncated file?)", path,
                     e->string, b, en, (unsigned long long)f->data_size);
            break;
        }
        t->begin = (uint64_t)b;
        t->end = (uint64_t)en;
        if (numel * (double)dtype_size(t->dtype) != en - b) {
            s = FAIL("%s: tensor '%s': shape needs %.0f bytes, offsets give %.0f", path, e->string,
                     numel * (double)dtype_size(t->dtype), en - b);
            break;
        }
        if (!(t->name = strdup(e->string))) {
            s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
            break;
        }
        f->n_tensors++;
    }
    cJSON_Delete(root);
    if (s) return s;
    st_tensor *sorted = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *sorted);
    if (!sorted) return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    memcpy(sorted, f->tensors, (size_t)f->n_tensors * sizeof *sorted);
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, cmp_begin);
    for (int i = 1; i < f->n_tensors && !s; i++)
        if (sorted[i].begin < sorted[i - 1].end && sorted[i].end > sorted[i].begin)
            s = FAIL("%s: tensors '%s' and '%s' overlap", path, sorted[i - 1].name, sorted[i].name);
    free(sorted);
    return s;
}

attamba_status st_open(const char *path, st_file *f, char *err, size_t err_size) {
    memset(f, 0, sizeof *f);
    int fd = core_open_regular(path); /* never blocks on a FIFO */
    if (fd < 0)
        return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot open %s%s", path,
                           errno == EINVAL ? ": not a regular file" : "");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "%s is not a regular file", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return FAIL("%s: %lld bytes is too short for a safetensors file", path, (long long)st.st_size);
    }
    f->map_size = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot map %s", path);
    }
    const unsigned char *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen == 0 || hlen > f->map_size - 8) {
        attamba_status s = FAIL("%s: header length %llu does not fit in the %zu-byte file", path,
                                (unsigned long long)hlen, f->map_size);
        st_close(f);
        return s;
    }
    f->data = p + 8 + hlen;
    f->data_size = f->map_size - 8 - hlen;
    attamba_status s = parse_header(f, path, (const char *)p + 8, (size_t)hlen, err, err_size);
    if (s) st_close(f);
    return s;
}

void st_close(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

void st_read_f32(const st_file *f, const st_tensor *t, float *out) {
    const unsigned char *src = f->data + t->begin;
    int64_t n = st_numel(t);
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *b = src + (size_t)i * dtype_size(t->dtype);
        uint32_t bits;
        switch (t->dtype) {
        case ST_F32:
            bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&out[i], &bits, 4);
            break;
        case ST_BF16:
            bits = ((uint32_t)b[0] | (uint32_t)b[1] << 8) << 16;
            memcpy(&out[i], &bits, 4);
            break;
        case ST_F16: out[i] = quant_f32_from_f16((uint16_t)(b[0] | b[1] << 8)); break;
        case ST_I8: out[i] = (float)(signed char)b[0]; break;
        }
    }
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

attamba_status st_write(const char *path, const st_entry *entries, int n, const char *const *metadata, char *err,
                        size_t err_size) {
    st_entry *sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    cJSON *root = cJSON_CreateObject();
    if (!sorted || !root) {
        free(sorted);
        cJSON_Delete(root);
        return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    memcpy(sorted, entries, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_entry);
    if (metadata && metadata[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; metadata[i] && metadata[i + 1]; i += 2) cJSON_AddStringToObject(m, metadata[i], metadata[i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, sorted[i].name);
        cJSON_AddStringToObject(t, "dtype", dtype_names[sorted[i].dtype]);
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        int64_t numel = 1;
        for (int d = 0; d < sorted[i].ndim; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)sorted[i].shape[d]));
            numel *= sorted[i].shape[d];
        }
        cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += (uint64_t)numel * dtype_size(sorted[i].dtype);
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = json && tmp ? fopen(tmp, "wb") : NULL;
    int ok = f != NULL;
    if (ok) {
        size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        ok = fwrite(len, 1, 8, f) == 8 && fwrite(json, 1, hl, f) == hl;
        for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
        /* little-endian values on every host we support; checked at compile time below */
        for (int i = 0; ok && i < n; i++) {
            int64_t numel = 1;
            for (int d = 0; d < sorted[i].ndim; d++) numel *= sorted[i].shape[d];
            size_t es = dtype_size(sorted[i].dtype);
            ok = fwrite(sorted[i].data, es, (size_t)numel, f) == (size_t)numel;
        }
        ok = (fclose(f) == 0) && ok;
    }
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    free(json);
    free(sorted);
    return ok ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write %s", path);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "st_write writes host floats as little-endian: add a byte swap for big-endian hosts"
#endif
