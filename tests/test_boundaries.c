/* Chunk boundaries (SPEC 3.2): every strategy, absolute-position invariance, segment starts,
 * refused explicit lists. */
#include <stdlib.h>
#include <string.h>

#include "ops/boundaries.h"
#include "testutil.h"

static int64_t list(const boundary_spec *s, int layer, int n_layers, int64_t end, int64_t *out, int64_t cap) {
    int64_t n = boundary_positions(s, layer, n_layers, end, out, cap);
    ck_assert_int_ge(n, 0);
    ck_assert_int_le(n, cap);
    return n;
}

START_TEST(uniform_boundaries_end_every_chunk) {
    boundary_spec s = {.strategy = BOUNDARY_UNIFORM, .chunk = 4};
    int64_t b[16];
    int64_t n = list(&s, 0, 8, 13, b, 16);
    int64_t want[] = {0, 3, 7, 11};
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(b[i], want[i]);
    s.chunk = 1; /* P = 1: every token is a boundary */
    ck_assert_int_eq(list(&s, 0, 1, 5, b, 16), 5);
}
END_TEST

START_TEST(cyclic_boundaries_shift_per_layer) {
    boundary_spec s = {.strategy = BOUNDARY_CYCLIC, .chunk = 8};
    int64_t b[8];
    /* P=8, 8 layers: o_l = l; layer 3 gives 0, 4, 12, 20 (SPEC 3.2, paper notes) */
    int64_t n = list(&s, 3, 8, 24, b, 8);
    int64_t want[] = {0, 4, 12, 20};
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(b[i], want[i]);
    /* the offset saturates at P-1: layer 7 of 8 with P=8 gives 0, 8, 16 */
    n = list(&s, 7, 8, 20, b, 8);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(b[1], 8);
    /* P < n_layers: floor(P/n_layers) = 0, so cyclic == uniform */
    boundary_spec c = {.strategy = BOUNDARY_CYCLIC, .chunk = 4}, u = {.strategy = BOUNDARY_UNIFORM, .chunk = 4};
    int64_t x[16], y[16], nx = list(&c, 5, 8, 40, x, 16);
    ck_assert_int_eq(nx, list(&u, 5, 8, 40, y, 16));
    ck_assert(memcmp(x, y, (size_t)nx * sizeof *x) == 0);
}
END_TEST

START_TEST(random_boundaries_are_seeded_with_mean_spacing_p) {
    boundary_spec s = {.strategy = BOUNDARY_RANDOM, .chunk = 8, .seed = 42};
    int64_t *a = malloc(20000 * sizeof *a), *b = malloc(20000 * sizeof *b);
    int64_t n = list(&s, 2, 4, 80000, a, 20000);
    ck_assert_int_eq(list(&s, 2, 4, 80000, b, 20000), n);
    ck_assert(memcmp(a, b, (size_t)n * sizeof *a) == 0);
    double mean = 80000.0 / (double)n;
    ck_assert_msg(mean > 7.5 && mean < 8.5, "mean spacing %.2f, want about 8", mean);
    for (int64_t i = 1; i < n; i++) ck_assert_int_gt(a[i], a[i - 1]);
    s.seed = 43;
    ck_assert(list(&s, 2, 4, 80000, b, 20000) != n || memcmp(a, b, (size_t)n * sizeof *a) != 0);
    free(a);
    free(b);
}
END_TEST

START_TEST(boundaries_depend_on_absolute_position_only) {
    boundary_strategy all[] = {BOUNDARY_UNIFORM, BOUNDARY_CYCLIC, BOUNDARY_RANDOM};
    for (int k = 0; k < 3; k++) {
        boundary_spec s = {.strategy = all[k], .chunk = 5, .seed = 7};
        int64_t longer[200], shorter[200];
        int64_t nl = list(&s, 1, 3, 300, longer, 200), ns = list(&s, 1, 3, 137, shorter, 200);
        ck_assert_int_le(ns, nl);
        ck_assert(memcmp(longer, shorter, (size_t)ns * sizeof *longer) == 0);
        /* the per-position query agrees with the list */
        int64_t j = 0;
        for (int64_t p = 0; p < 300; p++) {
            int is = j < nl && longer[j] == p;
            if (is) j++;
            ck_assert_int_eq(boundary_is_boundary(&s, 1, 3, p), is);
        }
    }
}
END_TEST

START_TEST(explicit_boundaries_are_validated) {
    int64_t ok[] = {2, 5, 9}, unsorted[] = {5, 2}, dup[] = {3, 3}, neg[] = {-1, 4};
    boundary_spec s = {.strategy = BOUNDARY_EXPLICIT, .positions = ok, .n_positions = 3};
    int64_t b[8];
    ck_assert_int_eq(list(&s, 0, 1, 10, b, 8), 4); /* 0 added */
    ck_assert_int_eq(b[0], 0);
    ck_assert_int_eq(b[3], 9);
    ck_assert_int_eq(boundary_positions(&s, 0, 1, 9, b, 8), 3); /* 9 lies beyond T = 9 */
    char err[256];
    s.positions = unsorted;
    s.n_positions = 2;
    ck_assert_int_eq(boundary_validate(&s, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "increasing"));
    s.positions = dup;
    ck_assert_int_eq(boundary_validate(&s, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    s.positions = neg;
    ck_assert_int_eq(boundary_validate(&s, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "negative"));
    boundary_spec p0 = {.strategy = BOUNDARY_UNIFORM, .chunk = 0};
    ck_assert_int_eq(boundary_validate(&p0, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(boundary_positions(&p0, 0, 1, 10, b, 8), -1);
}
END_TEST

START_TEST(segment_starts_follow_boundaries) {
    int64_t b[] = {0, 3, 7};
    int32_t s[10];
    boundary_segment_starts(b, 3, 10, s);
    int32_t want[] = {0, 1, 1, 1, 4, 4, 4, 4, 8, 8};
    for (int i = 0; i < 10; i++) ck_assert_int_eq(s[i], want[i]);
}
END_TEST

START_TEST(strategy_names_parse) {
    boundary_spec s = {0};
    ck_assert_int_eq(boundary_parse("cyclic", &s, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(s.strategy, BOUNDARY_CYCLIC);
    ck_assert_int_eq(boundary_parse("random:123", &s, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(s.strategy, BOUNDARY_RANDOM);
    ck_assert_uint_eq(s.seed, 123);
    char err[128];
    ck_assert_int_eq(boundary_parse("random:x", &s, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(boundary_parse("fancy", &s, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "fancy"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("boundaries");
    TCase *t = tcase_create("boundaries");
    tcase_add_test(t, uniform_boundaries_end_every_chunk);
    tcase_add_test(t, cyclic_boundaries_shift_per_layer);
    tcase_add_test(t, random_boundaries_are_seeded_with_mean_spacing_p);
    tcase_add_test(t, boundaries_depend_on_absolute_position_only);
    tcase_add_test(t, explicit_boundaries_are_validated);
    tcase_add_test(t, segment_starts_follow_boundaries);
    tcase_add_test(t, strategy_names_parse);
    suite_add_tcase(s, t);
    return tu_run(s);
}
