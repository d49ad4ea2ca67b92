/* boundaries.h: chunk boundaries (SPEC 3.2). A boundary is the LAST token of a segment; position 0
 * is always a boundary, so the first segment is [0, 0], then [b_0 + 1, b_1], ... The SSM state and
 * the conv window restart at each segment's first token. Boundaries depend on absolute position
 * only (never on T), so prefill and decode agree. Host-side code: the results are uploaded as
 * i32 tensors for the kernels. */
#ifndef ATTAMBA_BOUNDARIES_H
#define ATTAMBA_BOUNDARIES_H

#include <stdint.h>

#include "attamba/attamba.h"

typedef enum {
    BOUNDARY_UNIFORM = 0,   /* P-1, 2P-1, ... */
    BOUNDARY_CYCLIC = 1,    /* shifted per layer by o_l = min(P-1, l * floor(P / n_layers)) */
    BOUNDARY_RANDOM = 2,    /* gaps uniform in [1, 2P-1] (mean P), seeded per (seed, layer) */
    BOUNDARY_EXPLICIT = 3   /* the caller's sorted list, the same in every layer */
} boundary_strategy;

typedef struct boundary_spec {
    boundary_strategy strategy;
    int chunk;                  /* P >= 1 (unused for explicit) */
    uint64_t seed;              /* random only */
    const int64_t *positions;   /* explicit only: strictly increasing, >= 0 */
    int n_positions;
} boundary_spec;

/* "uniform", "cyclic", "random" or "explicit"; NULL for unknown values. */
const char *boundary_strategy_name(boundary_strategy s);
/* Parses "uniform", "cyclic", "random" or "random:SEED" into spec (chunk untouched). */
attamba_status boundary_parse(const char *text, boundary_spec *spec, char *err, size_t err_size);
/* Checks P >= 1, and for explicit lists: strictly increasing, non-negative. */
attamba_status boundary_validate(const boundary_spec *spec, char *err, size_t err_size);

/* The boundaries of layer `layer` (of n_layers) in [0, end), sorted, starting with 0. Writes at most
 * cap positions to out (may be NULL to count) and returns how many there are, or -1 if the spec
 * is invalid (see boundary_validate). Explicit positions >= end are outside the range, not errors:
 * boundaries depend on absolute position only. */
int64_t boundary_positions(const boundary_spec *spec, int layer, int n_layers, int64_t end, int64_t *out,
                           int64_t cap);
/* Whether absolute position pos is a boundary of the layer. */
int boundary_is_boundary(const boundary_spec *spec, int layer, int n_layers, int64_t pos);
/* seg_start[t] = the first position of t's segment, for t in [0, T). */
void boundary_segment_starts(const int64_t *b, int64_t nb, int64_t T, int32_t *seg_start);
/* The most tokens any segment of [0, T) has, for the sorted boundaries b (as above). */
int64_t boundary_longest_segment(const int64_t *b, int64_t nb, int64_t T);

#endif
