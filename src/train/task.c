/* task.c: the recall tasks' generators, their file, and exact-match scoring (task.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

#define TASK_MAGIC "ATBTSK01"
#define TASK_HEADER 32

static const char NEEDLE_A[] = "The pass key is ", NEEDLE_B[] = ". Remember it. ", NEEDLE_C[] = " is the pass key. ";
static const char QUESTION[] = "What is the pass key? The pass key is ";

const char *task_kind_name(task_kind k) { return k == TASK_MQAR ? "mqar" : k == TASK_PASSKEY ? "passkey" : "?"; }

task_kind task_kind_from_name(const char *name) {
    return !strcmp(name, "mqar") ? TASK_MQAR : !strcmp(name, "passkey") ? TASK_PASSKEY : (task_kind)0;
}

static int64_t below(core_rng *rng, int64_t n) { return (int64_t)(core_rng_next(rng) % (uint64_t)n); }

/* k distinct values of [0, n) into out (partial Fisher-Yates over scratch, n ints). */
static void pick_distinct(core_rng *rng, int n, int k, int *scratch, int *out) {
    for (int i = 0; i < n; i++) scratch[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)below(rng, n - i), x = scratch[i];
        scratch[i] = scratch[j], scratch[j] = x;
        out[i] = scratch[i];
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* One mqar example at tok (p->example tokens) with `pairs` pairs; its items at items. scratch holds
 * max(p->example, p->vocab) ints. */
static void mqar_example(const task_params *p, int pairs, core_rng *rng, int64_t base, int *scratch, uint16_t *tok,
                         uint8_t *scored, task_item *items) {
    /* the pairs start `lead` tokens in (0-7, as room allows), so that facts fall at every offset of a chunk */
    int half = p->vocab / 2, lead = (int)below(rng, CORE_MIN(8, p->example - 4 * pairs + 1));
    int slots = (p->example - lead - 2 * pairs) / 2;
    int key[pairs], value[pairs], order[pairs], slot[pairs];
    pick_distinct(rng, half - 1, pairs, scratch, key); /* keys 1 .. half-1 */
    pick_distinct(rng, pairs, pairs, scratch, order);  /* the order they are asked in */
    pick_distinct(rng, slots, pairs, scratch, slot);   /* where: two-token slots after the pairs */
    qsort(slot, (size_t)pairs, sizeof *slot, cmp_int);
    memset(tok, 0, (size_t)p->example * sizeof *tok);
    memset(scored, 0, (size_t)p->example);
    for (int i = 0; i < pairs; i++) {
        value[i] = half + (int)below(rng, p->vocab - half);
        tok[lead + 2 * i] = (uint16_t)(key[i] + 1), tok[lead + 2 * i + 1] = (uint16_t)value[i];
    }
    for (int i = 0; i < pairs; i++) {
        int q = lead + 2 * pairs + 2 * slot[i], v = lead + 2 * order[i] + 1; /* the query; its pair's value */
        tok[q] = tok[v - 1], tok[q + 1] = tok[v];
        scored[q + 1] = 1;
        items[i] = (task_item){base + q + 1, 1, v, pairs, q + 1 - v};
    }
}

/* One passkey example: filler cut at a random place, the needle at `depth` of it, the question, the
 * digits. */
static void passkey_example(const task_params *p, double depth, core_rng *rng, int64_t base, uint16_t *tok,
                            uint8_t *scored, task_item *item) {
    char digits[16], needle[128];
    for (int i = 0; i < p->digits; i++) digits[i] = (char)('0' + below(rng, 10));
    digits[p->digits] = 0;
    int nl = snprintf(needle, sizeof needle, "%s%s%s%s%s", NEEDLE_A, digits, NEEDLE_B, digits, NEEDLE_C);
    int ql = (int)strlen(QUESTION), fill = p->example - nl - ql - p->digits;
    int at = (int)lround(depth * fill); /* filler bytes before the needle */
    int64_t from = below(rng, p->filler_len - fill + 1);
    int k = 0;
    for (int i = 0; i < at; i++) tok[k++] = p->filler[from + i];
    for (int i = 0; i < nl; i++) tok[k++] = (uint8_t)needle[i];
    for (int i = at; i < fill; i++) tok[k++] = p->filler[from + i];
    for (int i = 0; i < ql; i++) tok[k++] = (uint8_t)QUESTION[i];
    memset(scored, 0, (size_t)p->example);
    for (int i = 0; i < p->digits; i++) scored[k] = 1, tok[k++] = (uint8_t)digits[i];
    int source = at + (int)strlen(NEEDLE_A) + p->digits - 1;
    *item = (task_item){base + p->example - p->digits, p->digits, source, (int)lround(depth * 100),
                        p->example - p->digits - source};
}

attamba_status task_generate(const task_params *p, task_set *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if (p->example < 8 || p->example > 1 << 20 || p->examples < 1 || p->examples > 1 << 24)
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                           "want examples of 8 to 2^20 tokens, 1 to 2^24 of them");
    int64_t n_items = 0;
    if (p->kind == TASK_MQAR) {
        if (p->vocab < 4 || p->vocab > 65536 || p->n_pairs < 1 || p->n_pairs > 16)
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                               "mqar: want a vocabulary of 4 to 65536 and 1 to 16 pair counts");
        for (int i = 0; i < p->n_pairs; i++) {
            int n = p->pairs[i];
            if (n < 1 || n > p->vocab / 2 - 1)
                return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                                   "mqar: %d pairs need distinct keys from [1, %d): at most %d", n, p->vocab / 2,
                                   p->vocab / 2 - 1);
            if (4 * n > p->example)
                return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                                   "mqar: %d pairs and their %d queries need at least %d tokens per example, not %d", n,
                                   n, 4 * n, p->example);
        }
        for (int e = 0; e < p->examples; e++) n_items += p->pairs[e % p->n_pairs];
    } else if (p->kind == TASK_PASSKEY) {
        int fixed = (int)(strlen(NEEDLE_A) + strlen(NEEDLE_B) + strlen(NEEDLE_C) + strlen(QUESTION)) + 3 * p->digits;
        if (p->digits < 1 || p->digits > 12 || p->n_depth < 0 || p->n_depth > 16)
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                               "passkey: want 1 to 12 digits and at most 16 depths");
        for (int i = 0; i < p->n_depth; i++)
            if (!(p->depth[i] >= 0 && p->depth[i] <= 1))
                return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "passkey: depths are in [0, 1]");
        if (p->example < fixed + 1)
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                               "passkey: the needle and the question take %d tokens: want examples of more", fixed);
        if (!p->filler || p->filler_len < p->example - fixed)
            return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                               "passkey: the filler text has %lld bytes, fewer than one example needs (%d)",
                               (long long)p->filler_len, p->example - fixed);
        n_items = p->examples;
    } else {
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "unknown task %d", (int)p->kind);
    }
    out->kind = p->kind;
    out->example = p->example;
    out->n = (int64_t)p->examples * p->example;
    out->tok = malloc((size_t)out->n * sizeof *out->tok);
    out->scored = malloc((size_t)out->n);
    out->items = malloc((size_t)n_items * sizeof *out->items);
    out->n_items = n_items;
    int *scratch = malloc((size_t)CORE_MAX(p->example, p->vocab) * sizeof *scratch);
    if (!out->tok || !out->scored || !out->items || !scratch) {
        free(scratch);
        task_free(out);
        return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %d examples", p->examples);
    }
    core_rng rng;
    core_rng_seed(&rng, p->seed);
    task_item *item = out->items;
    for (int e = 0; e < p->examples; e++) {
        int64_t base = (int64_t)e * p->example;
        if (p->kind == TASK_MQAR) {
            int pairs = p->pairs[e % p->n_pairs];
            mqar_example(p, pairs, &rng, base, scratch, out->tok + base, out->scored + base, item);
            item += pairs;
        } else {
            double depth = p->n_depth ? p->depth[e % p->n_depth] : core_rng_uniform(&rng);
            passkey_example(p, depth, &rng, base, out->tok + base, out->scored + base, item++);
        }
    }
    free(scratch);
    return ATTAMBA_OK;
}

void task_free(task_set *t) {
    free(t->tok);
    free(t->scored);
    free(t->items);
    memset(t, 0, sizeof *t);
}

static size_t padded(size_t n) { return (n + 7) & ~(size_t)7; }

attamba_status task_write(const char *path, const task_set *t, char *err, size_t err_size) {
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    uint32_t head32[2] = {(uint32_t)t->kind, (uint32_t)t->example};
    uint64_t head64[2] = {(uint64_t)t->n, (uint64_t)t->n_items};
    static const char zeros[8] = {0};
    size_t body = (size_t)t->n * 3, pad = padded(body) - body;
    int ok = f && fwrite(TASK_MAGIC, 1, 8, f) == 8 && fwrite(head32, 4, 2, f) == 2 && fwrite(head64, 8, 2, f) == 2 &&
             fwrite(t->tok, 2, (size_t)t->n, f) == (size_t)t->n &&
             fwrite(t->scored, 1, (size_t)t->n, f) == (size_t)t->n &&
             fwrite(zeros, 1, pad, f) == pad &&
             fwrite(t->items, sizeof *t->items, (size_t)t->n_items, f) == (size_t)t->n_items;
    if (f) ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    return ok ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write %s", path);
}

attamba_status task_read(const char *path, task_set *t, char *err, size_t err_size) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot open %s", path);
    char magic[8];
    uint32_t head32[2];
    uint64_t head64[2];
    attamba_status s = ATTAMBA_OK;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    rewind(f);
    if (size < TASK_HEADER || fread(magic, 1, 8, f) != 8 || memcmp(magic, TASK_MAGIC, 8) ||
        fread(head32, 4, 2, f) != 2 || fread(head64, 8, 2, f) != 2) {
        s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s is not a task file (made by attamba data)", path);
    } else {
        uint64_t n = head64[0], n_items = head64[1], e = head32[1];
        uint64_t want = TASK_HEADER + padded(n * 3) + n_items * sizeof(task_item);
        if ((head32[0] != TASK_MQAR && head32[0] != TASK_PASSKEY) || e < 1 || e > 1 << 20 || n % e ||
            n > (uint64_t)size || n_items > (uint64_t)size || want != (uint64_t)size)
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                            "%s: the header (kind %u, examples of %u tokens, %llu tokens, %llu items) does not match "
                            "its %ld bytes", path, head32[0], head32[1], (unsigned long long)n,
                            (unsigned long long)n_items, size);
        else {
            t->kind = (task_kind)head32[0], t->example = (int)e, t->n = (int64_t)n, t->n_items = (int64_t)n_items;
            t->tok = malloc(n * 2 + 1), t->scored = malloc(n + 1), t->items = malloc(n_items * sizeof *t->items + 1);
            if (!t->tok || !t->scored || !t->items)
                s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %s", path);
            else if (fread(t->tok, 2, n, f) != n || fread(t->scored, 1, n, f) != n ||
                     fseek(f, (long)padded(n * 3) + TASK_HEADER, SEEK_SET) ||
                     fread(t->items, sizeof *t->items, n_items, f) != n_items)
                s = core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot read %s", path);
        }
    }
    for (int64_t i = 0; !s && i < t->n_items; i++) { /* in order, every answer inside one example, scored */
        const task_item *it = &t->items[i];
        int64_t ex = it->start / t->example;
        int ok = it->start >= (i ? t->items[i - 1].start : 0) && it->start < t->n && it->len >= 1 &&
                 it->len <= t->example &&
                 it->start + it->len <= (ex + 1) * t->example && it->source >= 0 &&
                 it->source < t->example;
        for (int j = 0; ok && j < it->len; j++) ok = t->scored[it->start + j] == 1;
        if (!ok)
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                            "%s: item %lld is not a scored answer inside its example", path, (long long)i);
    }
    fclose(f);
    if (s) task_free(t);
    return s;
}

/* Adds one outcome to the tally with this key (a new one if there is room). */
static void tally(task_tally *list, int *n, int key, int right) {
    int i = 0;
    while (i < *n && list[i].key != key) i++;
    if (i == *n) {
        if (*n == TASK_MAX_GROUPS) return;
        list[(*n)++] = (task_tally){key, 0, 0};
    }
    list[i].right += right;
    list[i].total++;
}

static int cmp_tally(const void *a, const void *b) {
    int x = ((const task_tally *)a)->key, y = ((const task_tally *)b)->key;
    return (x > y) - (x < y);
}

int task_score(const task_set *t, int bos, task_predict_fn predict, void *user, int batch, int chunk,
               task_report *r) {
    memset(r, 0, sizeof *r);
    int T = t->example;
    int64_t examples = t->n / T;
    int32_t *tok = malloc((size_t)batch * T * sizeof *tok), *arg = malloc((size_t)batch * T * sizeof *arg);
    int rc = !tok || !arg;
    int64_t next = 0; /* items are in stream order */
    for (int64_t e0 = 0; e0 < examples && !rc; e0 += batch) {
        int B = (int)CORE_MIN((int64_t)batch, examples - e0);
        for (int b = 0; b < B; b++) {
            const uint16_t *src = t->tok + (e0 + b) * T;
            tok[b * T] = bos;
            for (int i = 0; i + 1 < T; i++) tok[b * T + i + 1] = src[i];
        }
        if ((rc = predict(user, tok, B, T, arg) != 0)) break;
        for (; next < t->n_items && t->items[next].start < (e0 + B) * T; next++) {
            const task_item *it = &t->items[next]; /* in stream order (task_read checks), so in this batch */
            int right = 1;
            for (int j = 0; j < it->len; j++) {
                int ok = arg[it->start - e0 * T + j] == t->tok[it->start + j];
                right &= ok;
                r->tokens.right += ok, r->tokens.total++;
            }
            r->all.right += right, r->all.total++;
            tally(r->group, &r->n_group, it->group, right);
            if (chunk > 0) tally(r->offset, &r->n_offset, (it->source + 1) % chunk, right);
            int bucket = 0; /* distance in [2^b, 2^(b+1)) */
            while (bucket < 30 && (1 << (bucket + 1)) <= it->distance) bucket++;
            tally(r->distance, &r->n_distance, 1 << bucket, right);
        }
    }
    qsort(r->group, (size_t)r->n_group, sizeof *r->group, cmp_tally);
    qsort(r->offset, (size_t)r->n_offset, sizeof *r->offset, cmp_tally);
    qsort(r->distance, (size_t)r->n_distance, sizeof *r->distance, cmp_tally);
    free(tok);
    free(arg);
    return rc;
}

void task_wilson(int64_t right, int64_t total, double *lo, double *hi) {
    if (total <= 0) {
        *lo = 0, *hi = 1;
        return;
    }
    double z = 1.959963984540054, n = (double)total, p = (double)right / n, z2 = z * z;
    double mid = (p + z2 / (2 * n)) / (1 + z2 / n), half = z / (1 + z2 / n) * sqrt(p * (1 - p) / n + z2 / (4 * n * n));
    *lo = CORE_MAX(0.0, mid - half), *hi = CORE_MIN(1.0, mid + half);
}
