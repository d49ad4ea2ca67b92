/* core.h: status strings, logging, formatting helpers and a small seeded RNG.
 * The bottom layer: depends on nothing but libc. */
#ifndef ATTAMBA_CORE_H
#define ATTAMBA_CORE_H

#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "attamba/attamba.h"

#define CORE_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CORE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CORE_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define CORE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CORE_PRINTF(f, a)
#endif

/* snprintf into buf when buf is not NULL; returns s so callers can `return core_errbuf(...)`. */
attamba_status core_errbuf(char *buf, size_t size, attamba_status s, const char *fmt, ...)
    CORE_PRINTF(4, 5);

/* A malloc'd printf. NULL when out of memory. */
char *core_strdup_printf(const char *fmt, ...) CORE_PRINTF(1, 2);

typedef enum { CORE_LOG_ERROR = 0, CORE_LOG_WARN = 1, CORE_LOG_INFO = 2, CORE_LOG_DEBUG = 3 } core_log_level;

/* Writes to stderr when level <= $ATTAMBA_LOG (error|warn|info|debug, default warn). */
void core_log(core_log_level level, const char *fmt, ...) CORE_PRINTF(2, 3);

/* A one-line progress bar on stderr ("\r" redrawn; only when stderr is a terminal, except
 * the final line, done = 1): label, fraction done in [0,1], then a free-form suffix. */
void core_progress(const char *label, double frac, int done, const char *suffix);

/* Opens path read-only if it is a regular file: never blocks on a FIFO (opened non-blocking, then
 * checked with fstat); -1 with errno = EINVAL for a device, FIFO, directory or socket. */
int core_open_regular(const char *path);
/* The same as a stdio stream ("rb"), or NULL. */
FILE *core_fopen_regular(const char *path);
/* A regular file's bytes, at most max of them (0 = all), NUL-terminated, *len without the NUL;
 * NULL (message in err) when it cannot be read, is not a regular file or memory runs out. */
char *core_read_file(const char *path, size_t max, size_t *len, char *err, size_t err_size);
/* Writes text (and a newline) to path through path.tmp and a rename, so that a reader never sees a
 * half-written file; 0 on success (the temporary removed on failure). */
int core_write_file_atomic(const char *path, const char *text);
/* The same for size bytes of data, as they are. */
int core_write_bytes_atomic(const char *path, const void *data, size_t size);

/* mkdir -p: 0 on success (also when it exists). */
int core_mkdirs(const char *dir);

/* Monotonic seconds. */
double core_now(void);

/* Splits B items into n <= CORE_SPLIT_MAX parts in proportion to weight[0..n-1] (largest remainders,
 * ties to the lower index; equal parts when no weight is positive). */
#define CORE_SPLIT_MAX 64
void core_split(const double *weight, int n, int B, int *rows);

/* xoshiro256** seeded through splitmix64: reproducible across platforms. */
typedef struct { uint64_t s[4]; } core_rng;
void core_rng_seed(core_rng *r, uint64_t seed);
uint64_t core_rng_next(core_rng *r);
float core_rng_uniform(core_rng *r);         /* [0, 1) with 24 random bits */
float core_rng_normal(core_rng *r);          /* standard normal (Box-Muller) */

#endif
