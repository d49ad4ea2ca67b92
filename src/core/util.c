#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "core.h"

attamba_status core_errbuf(char *buf, size_t size, attamba_status s, const char *fmt, ...) {
    if (buf && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, size, fmt, ap);
        va_end(ap);
    }
    return s;
}

char *core_strdup_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int log_threshold(void) {
    static int level = -1;
    if (level < 0) {
        const char *e = getenv("ATTAMBA_LOG");
        level = CORE_LOG_WARN;
        if (e) {
            if (!strcmp(e, "error")) level = CORE_LOG_ERROR;
            else if (!strcmp(e, "info")) level = CORE_LOG_INFO;
            else if (!strcmp(e, "debug")) level = CORE_LOG_DEBUG;
        }
    }
    return level;
}

void core_log(core_log_level level, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if ((int)level > log_threshold()) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "attamba %s: ", names[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double core_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void core_rng_seed(core_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t core_rng_next(core_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float core_rng_uniform(core_rng *r) { return (float)(core_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

float core_rng_normal(core_rng *r) {
    float u1 = core_rng_uniform(r), u2 = core_rng_uniform(r);
    if (u1 < 1e-30f) u1 = 1e-30f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

void core_progress(const char *label, double frac, int done, const char *suffix) {
    static int tty = -1;
    if (tty < 0) tty = isatty(STDERR_FILENO);
    if (!tty && !done) return;
    enum { WIDTH = 28 };
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    int fill = (int)(frac * WIDTH + 0.5);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    fprintf(stderr, "%s%s [%s] %3.0f%% %s%s", tty ? "\r\033[K" : "", label, bar, 100 * frac, suffix ? suffix : "",
            done ? "\n" : "");
    fflush(stderr);
}

int core_mkdirs(const char *dir) {
    char *p = strdup(dir);
    if (!p) return -1;
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *c = '/';
    }
    int r = (mkdir(p, 0755) == 0 || errno == EEXIST) ? 0 : -1;
    free(p);
    return r;
}

int core_open_regular(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

FILE *core_fopen_regular(const char *path) {
    int fd = core_open_regular(path);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (fd >= 0 && !f) close(fd);
    return f;
}

int core_write_file_atomic(const char *path, const char *text) {
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

int core_write_bytes_atomic(const char *path, const void *data, size_t size) {
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    int ok = f && fwrite(data, 1, size, f) == size;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

char *core_read_file(const char *path, size_t max, size_t *len, char *err, size_t err_size) {
    int fd = core_open_regular(path);
    if (fd < 0) {
        core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot read %s: %s", path,
                    errno == EINVAL ? "not a regular file" : strerror(errno));
        return NULL;
    }
    struct stat st;
    size_t n = 0, want = fstat(fd, &st) == 0 ? (size_t)st.st_size : 0;
    if (max && want > max) want = max;
    char *buf = malloc(want + 1);
    while (buf && n < want) {
        ssize_t got = read(fd, buf + n, want - n);
        if (got <= 0) break; /* the file shrank: keep what was read */
        n += (size_t)got;
    }
    close(fd);
    if (!buf) {
        core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %zu bytes of %s", want, path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

void core_split(const double *weight, int n, int B, int *rows) {
    double total = 0, frac[CORE_SPLIT_MAX];
    for (int i = 0; i < n; i++) total += weight[i] > 0 ? weight[i] : 0;
    int given = 0;
    for (int i = 0; i < n; i++) {
        double share = total > 0 ? (weight[i] > 0 ? weight[i] : 0) / total * B : (double)B / n;
        rows[i] = (int)share;
        frac[i] = share - rows[i];
        given += rows[i];
    }
    for (; given < B; given++) { /* the rows left go to the largest remainders */
        int best = 0;
        for (int i = 1; i < n; i++)
            if (frac[i] > frac[best]) best = i;
        rows[best]++;
        frac[best] = -1;
    }
}
