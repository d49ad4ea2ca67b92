/* util.c: what the subcommands share besides the library: clock, files, the progress line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *cli_read_file(const char *cmd, const char *path, size_t max, size_t *len) {
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        if (f) fclose(f);
        cli_error(cmd, "cannot read %s: %s", path, f ? "not a regular file" : strerror(errno));
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    if (max && n > max) n = max;
    char *text = malloc(n + 1);
    if (!text) cli_error(cmd, "out of host memory for %s (%zu bytes)", path, n);
    else if (fread(text, 1, n, f) != n) cli_error(cmd, "cannot read %s", path);
    else {
        text[n] = 0;
        *len = n;
        fclose(f);
        return text;
    }
    free(text);
    fclose(f);
    return NULL;
}

int cli_write_file(const char *cmd, const char *path, const void *data, size_t size) {
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp) return cli_error(cmd, "out of host memory");
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int bad = !f || fwrite(data, 1, size, f) != size;
    if (f && fclose(f) != 0) bad = 1;
    if (!bad && rename(tmp, path) != 0) bad = 1;
    if (bad) remove(tmp);
    free(tmp);
    return bad ? cli_error(cmd, "cannot write %s", path) : 0;
}

void cli_progress(const char *label, double frac, int done, const char *suffix) {
    static int tty = -1;
    if (tty < 0) tty = isatty(STDERR_FILENO);
    if (!tty && !done) return;
    enum { WIDTH = 28 };
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < (int)(frac * WIDTH + 0.5) ? '#' : '.';
    bar[WIDTH] = 0;
    fprintf(stderr, "%s%s [%s] %3.0f%% %s%s", tty ? "\r\033[K" : "", label, bar, 100 * frac, suffix ? suffix : "",
            done ? "\n" : "");
    fflush(stderr);
}

int cli_mkdirs(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return -1;
    for (char *c = path + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}
