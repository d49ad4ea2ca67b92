#include <stdlib.h>
#include <string.h>

#include "boundaries.h"
#include "core/core.h"

const char *boundary_strategy_name(boundary_strategy s) {
    static const char *names[] = {"uniform", "cyclic", "random", "explicit"};
    return (unsigned)s < CORE_LEN(names) ? names[s] : NULL;
}

attamba_status boundary_parse(const char *text, boundary_spec *spec, char *err, size_t err_size) {
    if (!strcmp(text, "uniform")) spec->strategy = BOUNDARY_UNIFORM;
    else if (!strcmp(text, "cyclic")) spec->strategy = BOUNDARY_CYCLIC;
    else if (!strcmp(text, "random")) spec->strategy = BOUNDARY_RANDOM;
    else if (!strncmp(text, "random:", 7)) {
        char *end;
        unsigned long long seed = strtoull(text + 7, &end, 10);
        if (end == text + 7 || *end)
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "bad boundary seed in '%s'", text);
        spec->strategy = BOUNDARY_RANDOM;
        spec->seed = seed;
    } else {
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                           "unknown boundary strategy '%s' (uniform, cyclic, random or random:SEED)", text);
    }
    return ATTAMBA_OK;
}

attamba_status boundary_validate(const boundary_spec *spec, char *err, size_t err_size) {
    if (spec->strategy == BOUNDARY_EXPLICIT) {
        if (spec->n_positions < 0 || (spec->n_positions > 0 && !spec->positions))
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "explicit boundaries: no list");
        for (int i = 0; i < spec->n_positions; i++) {
            if (spec->positions[i] < 0)
                return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                                   "explicit boundaries: position %lld is negative", (long long)spec->positions[i]);
            if (i && spec->positions[i] <= spec->positions[i - 1])
                return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                                   "explicit boundaries must be strictly increasing: %lld after %lld",
                                   (long long)spec->positions[i], (long long)spec->positions[i - 1]);
        }
        return ATTAMBA_OK;
    }
    if ((unsigned)spec->strategy > BOUNDARY_EXPLICIT)
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "unknown boundary strategy %d", spec->strategy);
    if (spec->chunk < 1)
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "chunk size P must be >= 1, got %d", spec->chunk);
    return ATTAMBA_OK;
}

static int64_t cyclic_offset(int P, int layer, int n_layers) {
    int64_t o = (int64_t)layer * (P / (n_layers > 0 ? n_layers : 1));
    return o < P - 1 ? o : P - 1;
}

/* Random strategy: the gap after each boundary, from a stream seeded by (seed, layer). */
static void random_stream(const boundary_spec *spec, int layer, core_rng *r) {
    core_rng_seed(r, spec->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)layer + 1);
}

static int64_t random_gap(core_rng *r, int P) { return 1 + (int64_t)(core_rng_next(r) % (uint64_t)(2 * P - 1)); }

int64_t boundary_positions(const boundary_spec *spec, int layer, int n_layers, int64_t end, int64_t *out,
                           int64_t cap) {
    if (boundary_validate(spec, NULL, 0) != ATTAMBA_OK) return -1;
    int64_t n = 0;
#define EMIT(p)                               \
    do {                                      \
        if (out && n < cap) out[n] = (p);     \
        n++;                                  \
    } while (0)
    if (end <= 0) return 0;
    EMIT(0);
    int P = spec->chunk;
    switch (spec->strategy) {
    case BOUNDARY_UNIFORM:
    case BOUNDARY_CYCLIC: {
        int64_t first = P - 1 - (spec->strategy == BOUNDARY_CYCLIC ? cyclic_offset(P, layer, n_layers) : 0);
        for (int64_t b = first; b < end; b += P)
            if (b > 0) EMIT(b);
        break;
    }
    case BOUNDARY_RANDOM: {
        core_rng r;
        random_stream(spec, layer, &r);
        for (int64_t b = random_gap(&r, P) - 1; b < end; b += random_gap(&r, P))
            if (b > 0) EMIT(b);
        break;
    }
    case BOUNDARY_EXPLICIT:
        for (int i = 0; i < spec->n_positions && spec->positions[i] < end; i++)
            if (spec->positions[i] > 0) EMIT(spec->positions[i]);
        break;
    }
#undef EMIT
    return n;
}

int boundary_is_boundary(const boundary_spec *spec, int layer, int n_layers, int64_t pos) {
    if (pos == 0) return 1;
    int P = spec->chunk;
    switch (spec->strategy) {
    case BOUNDARY_UNIFORM: return (pos + 1) % P == 0;
    case BOUNDARY_CYCLIC: return (pos + 1 + cyclic_offset(P, layer, n_layers)) % P == 0;
    case BOUNDARY_RANDOM: {
        core_rng r;
        random_stream(spec, layer, &r);
        int64_t b = random_gap(&r, P) - 1;
        while (b < pos) b += random_gap(&r, P);
        return b == pos;
    }
    case BOUNDARY_EXPLICIT:
        for (int i = 0; i < spec->n_positions; i++)
            if (spec->positions[i] == pos) return 1;
        return 0;
    }
    return 0;
}

void boundary_segment_starts(const int64_t *b, int64_t nb, int64_t T, int32_t *seg_start) {
    int64_t j = 0, start = 0;
    for (int64_t t = 0; t < T; t++) {
        seg_start[t] = (int32_t)start;
        while (j < nb && b[j] < t) j++;
        if (j < nb && b[j] == t) start = t + 1; /* t ends its segment */
    }
}

int64_t boundary_longest_segment(const int64_t *b, int64_t nb, int64_t T) {
    int64_t longest = 0, start = 0;
    for (int64_t j = 0; j < nb && b[j] < T; j++) {
        longest = b[j] + 1 - start > longest ? b[j] + 1 - start : longest; /* b[j] ends its segment */
        start = b[j] + 1;
    }
    return T - start > longest ? T - start : longest;
}
