#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "task.h"

#define TOK_MAGIC "ATBTOK01"

attamba_status data_open(const char *path, dataset *d, char *err, size_t err_size) {
    memset(d, 0, sizeof *d);
    int fd = core_open_regular(path); /* never blocks on a FIFO */
    if (fd < 0)
        return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot open %s%s", path,
                           errno == EINVAL ? ": not a regular file" : "");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "%s is empty or not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot map %s", path);
    if (size >= 16 && !memcmp(map, TOK_MAGIC, 8)) {
        uint64_t n;
        memcpy(&n, (const char *)map + 8, 8);
        if (n > (size - 16) / 2) {
            munmap(map, size);
            return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s: says %llu tokens but holds %zu bytes (truncated?)",
                               path, (unsigned long long)n, size - 16);
        }
        d->map = map;
        d->map_size = size;
        d->tok = (const uint16_t *)((const char *)map + 16);
        d->n = (int64_t)n;
        return ATTAMBA_OK;
    }
    if (size >= 8 && !memcmp(map, "ATBTSK01", 8)) {
        munmap(map, size);
        task_set t;
        attamba_status s = task_read(path, &t, err, err_size);
        if (s) return s;
        free(t.items);
        d->owned = t.tok, d->scored = t.scored, d->n = t.n, d->example = t.example;
        d->tok = d->owned;
        return ATTAMBA_OK;
    }
    d->owned = malloc(size * sizeof *d->owned);
    if (!d->owned) {
        munmap(map, size);
        return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %s", path);
    }
    const unsigned char *b = map;
    for (size_t i = 0; i < size; i++) d->owned[i] = b[i];
    munmap(map, size);
    d->tok = d->owned;
    d->n = (int64_t)size;
    return ATTAMBA_OK;
}

void data_close(dataset *d) {
    if (d->map) munmap(d->map, d->map_size);
    free(d->owned);
    free(d->scored);
    memset(d, 0, sizeof *d);
}

attamba_status data_write_tokens(const char *path, const uint16_t *tok, int64_t n, char *err, size_t err_size) {
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    uint64_t n64 = (uint64_t)n;
    int ok = f && fwrite(TOK_MAGIC, 1, 8, f) == 8 && fwrite(&n64, 8, 1, f) == 1 &&
             fwrite(tok, 2, (size_t)n, f) == (size_t)n;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    return ok ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write %s", path);
}

int64_t data_train_end(const dataset *d, double val_frac) {
    if (val_frac <= 0) return d->n;
    if (val_frac >= 1) return 0;
    int64_t end = d->n - (int64_t)((double)d->n * val_frac);
    return d->example ? end / d->example * d->example : end;
}

void data_window(const dataset *d, int64_t s, int T, int bos, int32_t *tokens, int32_t *targets) {
    tokens[0] = bos;
    for (int t = 0; t < T; t++) {
        if (t + 1 < T) tokens[t + 1] = d->tok[s + t];
        targets[t] = d->scored && !d->scored[s + t] ? DATA_UNSCORED : d->tok[s + t];
    }
}

int64_t data_random_start(const dataset *d, core_rng *rng, int64_t begin, int64_t end, int T) {
    if (d->example) { /* begin and end are example boundaries (data_train_end), T the example length */
        int64_t n = (end - begin) / d->example;
        return n <= 1 ? begin : begin + (int64_t)(core_rng_next(rng) % (uint64_t)n) * d->example;
    }
    int64_t span = end - T - begin + 1;
    return span <= 1 ? begin : begin + (int64_t)(core_rng_next(rng) % (uint64_t)span);
}
