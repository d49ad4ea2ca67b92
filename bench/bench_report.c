/* attamba bench report / compare: reads the per-device JSON reports of `attamba bench suite`
 * (docs/bench/schema.json) and writes report.md with roofline and decode plots (SVG), or prints
 * reports side by side.
 *
 * Everything written is a function of the JSON files alone: files in name order, entries in file
 * order, numbers in fixed formats, no clock and no paths, so a regenerated report is byte-identical
 * and diffs show only what the measurements changed. A file is checked for every field the report
 * uses before anything is written; a malformed one fails with its name and the field's path. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "bench_report.h"
#include "cli.h"

/* ---- reports in memory ---- */

/* One measured case; the strings point into the report's cJSON tree. */
typedef struct {
    const char *bench, *op, *shape, *variant, *rate_unit; /* rate_unit: NULL when absent */
    const char *bound;                                   /* roofline bound; NULL: no roofline */
    double ms, min_ms, flop, bytes, gflops, gbs, rate, fraction, context; /* rate, context: 0 when absent */
    int reps, on_host;
} rep_entry;

typedef struct {
    const char *bench, *message;
} rep_failure;

/* One file: a suite report, or (bench compare only) a plain entry array, whose header fields stay NULL. */
typedef struct {
    char file[256], slug[256]; /* base name; the plots' name for it */
    cJSON *root;
    int is_report;
    const char *suite, *command, *created, *version, *commit;
    const char *dev_id, *dev_name, *platform, *driver, *type, *nominal_note;
    double suite_version, suite_seconds, compute_units, clock_mhz; /* suite_seconds (per case): -1 if absent */
    double fma_gflops, copy_gbs, write_gbs, read_gbs, launch_us, nominal_gflops; /* nominal: 0 when null */
    rep_entry *e;
    int ne;
    rep_failure *f;
    int nf;
} report;

static void report_free(report *r) {
    cJSON_Delete(r->root);
    free(r->e);
    free(r->f);
}

/* ---- checking fields: the first failure is kept as "FILE: path.to.field: what" ---- */

typedef struct {
    const char *file;
    char *err;
    size_t err_size;
    int bad;
} checker;

static void fail(checker *c, const char *where, const char *key, const char *what) {
    if (!c->bad) snprintf(c->err, c->err_size, "%s: %s%s%s: %s", c->file, where, *where && *key ? "." : "", key, what);
    c->bad = 1;
}

/* A string field; "" on failure, NULL when optional and absent. */
static const char *get_str(checker *c, const cJSON *o, const char *where, const char *key, int optional) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v) && v->valuestring) return v->valuestring;
    if (!v && optional) return NULL;
    fail(c, where, key, v ? "not a string" : "missing");
    return "";
}

/* A finite number >= 0 (> 0 when positive); `absent` (e.g. -1) when optional and missing or null. */
static double get_num(checker *c, const cJSON *o, const char *where, const char *key, int positive, int optional,
                      double absent) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (optional && (!v || cJSON_IsNull(v))) return absent;
    if (!cJSON_IsNumber(v)) {
        fail(c, where, key, v ? "not a number" : "missing");
        return absent;
    }
    double x = v->valuedouble;
    if (!isfinite(x) || x < 0 || (positive && x == 0)) {
        fail(c, where, key, positive ? "not a finite number > 0" : "not a finite number >= 0");
        return absent;
    }
    return x;
}

static const cJSON *get_obj(checker *c, const cJSON *o, const char *where, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsObject(v)) fail(c, where, key, v ? "not an object" : "missing");
    return v;
}

static const cJSON *get_arr(checker *c, const cJSON *o, const char *where, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(v)) fail(c, where, key, v ? "not an array" : "missing");
    return v;
}

/* One entry (definitions/entry; with its roofline when roofline is set). */
static void parse_entry(checker *c, const cJSON *o, const char *where, int roofline, rep_entry *e) {
    if (!cJSON_IsObject(o)) {
        fail(c, where, "", "not an object");
        return;
    }
    e->bench = get_str(c, o, where, "bench", 0);
    e->op = get_str(c, o, where, "op", 0);
    e->shape = get_str(c, o, where, "shape", 0);
    e->variant = get_str(c, o, where, "variant", 0);
    e->reps = (int)get_num(c, o, where, "reps", 1, 0, 0);
    e->ms = get_num(c, o, where, "ms", 1, 0, 1);
    e->min_ms = get_num(c, o, where, "min_ms", 1, 0, 1);
    e->flop = get_num(c, o, where, "flop", 0, 0, 0);
    e->bytes = get_num(c, o, where, "bytes", 0, 0, 0);
    e->gflops = get_num(c, o, where, "gflops", 0, 0, 0);
    e->gbs = get_num(c, o, where, "gbs", 0, 0, 0);
    e->rate = get_num(c, o, where, "rate", 1, 1, 0);
    e->rate_unit = get_str(c, o, where, "rate_unit", 1);
    e->context = get_num(c, o, where, "context", 0, 1, 0);
    e->on_host = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "on_host"));
    if (!roofline) return;
    char w[64];
    snprintf(w, sizeof w, "%s.roofline", where);
    const cJSON *rl = get_obj(c, o, where, "roofline");
    e->bound = get_str(c, rl, w, "bound", 0);
    e->fraction = get_num(c, rl, w, "fraction", 0, 0, 0);
    if (strcmp(e->bound, "compute") && strcmp(e->bound, "memory")) fail(c, w, "bound", "not compute or memory");
}

static void parse_entries(checker *c, const cJSON *arr, const char *name, int roofline, report *r) {
    int n = cJSON_GetArraySize(arr);
    r->e = calloc((size_t)n + 1, sizeof *r->e);
    if (!r->e) {
        fail(c, name, "", "out of memory");
        return;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        char w[48];
        snprintf(w, sizeof w, "%s[%d]", name, r->ne);
        parse_entry(c, o, w, roofline, &r->e[r->ne++]);
    }
}

/* The header, peaks, entries and failures of a suite report. */
static void parse_report(checker *c, const cJSON *root, report *r) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "schema_version");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1) fail(c, "", "schema_version", "not 1 (this reader knows version 1)");
    const cJSON *s = get_obj(c, root, "", "suite"), *l = get_obj(c, root, "", "library");
    const cJSON *d = get_obj(c, root, "", "device"), *p = get_obj(c, root, "", "peak");
    r->suite = get_str(c, s, "suite", "name", 0);
    r->suite_version = get_num(c, s, "suite", "version", 1, 0, 0);
    r->command = get_str(c, s, "suite", "command", 0);
    r->suite_seconds = get_num(c, s, "suite", "seconds", 0, 1, -1);
    r->created = get_str(c, root, "", "created_utc", 0);
    r->version = get_str(c, l, "library", "version", 0);
    r->commit = get_str(c, l, "library", "git_commit", 0);
    r->dev_id = get_str(c, d, "device", "id", 0);
    r->dev_name = get_str(c, d, "device", "name", 0);
    r->platform = get_str(c, d, "device", "platform", 0);
    r->driver = get_str(c, d, "device", "driver_version", 0);
    r->type = get_str(c, d, "device", "type", 0);
    r->compute_units = get_num(c, d, "device", "compute_units", 1, 0, 0);
    r->clock_mhz = get_num(c, d, "device", "clock_mhz", 0, 0, 0);
    r->fma_gflops = get_num(c, p, "peak", "fma_gflops", 1, 0, 1);
    r->copy_gbs = get_num(c, p, "peak", "copy_gbs", 1, 0, 1);
    r->write_gbs = get_num(c, p, "peak", "write_gbs", 1, 0, 1);
    r->read_gbs = get_num(c, p, "peak", "read_gbs", 1, 0, 1);
    r->launch_us = get_num(c, p, "peak", "launch_us", 1, 0, 1);
    if (!cJSON_GetObjectItemCaseSensitive(p, "nominal_gflops")) fail(c, "peak", "nominal_gflops", "missing");
    r->nominal_gflops = get_num(c, p, "peak", "nominal_gflops", 0, 1, 0);
    r->nominal_note = get_str(c, p, "peak", "nominal_note", 0);
    const cJSON *e = get_arr(c, root, "", "entries"), *f = get_arr(c, root, "", "failures");
    if (c->bad) return;
    parse_entries(c, e, "entries", 1, r);
    r->f = calloc((size_t)cJSON_GetArraySize(f) + 1, sizeof *r->f);
    const cJSON *o;
    cJSON_ArrayForEach(o, f) {
        char w[48];
        snprintf(w, sizeof w, "failures[%d]", r->nf);
        if (!cJSON_IsObject(o)) fail(c, w, "", "not an object");
        if (r->f) r->f[r->nf++] = (rep_failure){get_str(c, o, w, "bench", 0), get_str(c, o, w, "message", 0)};
    }
}

static int is_report(const cJSON *root) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "schema");
    return cJSON_IsObject(root) && cJSON_IsString(s) && !strcmp(s->valuestring, "attamba-bench");
}

/* Loads path into r (file: the name in messages). 0: a report, or an entry array when arrays is set;
 * 1: something else (valid JSON); -1: unreadable or malformed (message in err). */
static int report_load(const char *path, const char *file, int arrays, report *r, char *err, size_t err_size) {
    memset(r, 0, sizeof *r);
    snprintf(r->file, sizeof r->file, "%s", file);
    size_t len;
    char *text = cli_read_file("bench report", path, 0, &len); /* says why not on stderr */
    if (!text) return snprintf(err, err_size, "%s: unreadable", file), -1;
    r->root = cJSON_Parse(text);
    free(text);
    if (!r->root) return snprintf(err, err_size, "%s: not valid JSON", file), -1;
    checker c = {file, err, err_size, 0};
    if (is_report(r->root)) {
        r->is_report = 1;
        parse_report(&c, r->root, r);
    } else if (arrays && cJSON_IsArray(r->root)) {
        parse_entries(&c, r->root, "", 0, r);
        if (!c.bad && r->ne && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r->root->child, "device")))
            fail(&c, "[0]", "device", "missing or not a string");
    } else {
        return 1;
    }
    return c.bad ? -1 : 0;
}

/* ---- formats: fixed, so that regenerated files are byte-identical ---- */

typedef struct {
    char s[48];
} str48;

/* Three significant digits, without an exponent from 1e-4 to 1e15. */
static str48 num(double v) {
    str48 t;
    if (fabs(v) >= 1000 && fabs(v) < 1e15) snprintf(t.s, sizeof t.s, "%.0f", v);
    else snprintf(t.s, sizeof t.s, "%.3g", v);
    return t;
}

/* A speed ratio: "1.23x", "0.000412x". */
static str48 ratio(double v) {
    str48 t;
    snprintf(t.s, sizeof t.s, v >= 0.1 ? "%.2fx" : "%.3gx", v);
    return t;
}

/* A roofline fraction as a percent with its bound: "41% compute", "0.3% memory". */
static str48 pct(const rep_entry *e) {
    str48 t;
    if (!e->bound) snprintf(t.s, sizeof t.s, "-");
    else snprintf(t.s, sizeof t.s, e->fraction < 0.1 ? "%.1f%% %s" : "%.0f%% %s", 100 * e->fraction, e->bound);
    return t;
}

/* Writes pre, s with the characters that would break a markdown table cell escaped, and post. */
static void md(FILE *f, const char *pre, const char *s, const char *post) {
    fputs(pre, f);
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n' || *s == '\r') fputc(' ', f);
        else fputc(*s, f);
    }
    fputs(post, f);
}

static void xml(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* ---- matching entries across files by (bench, op, shape, variant) ---- */

static int same_key(const rep_entry *a, const rep_entry *b) {
    return !strcmp(a->bench, b->bench) && !strcmp(a->op, b->op) && !strcmp(a->shape, b->shape) &&
           !strcmp(a->variant, b->variant);
}

/* r's first entry with k's key, or NULL. */
static const rep_entry *find(const report *r, const rep_entry *k) {
    for (int i = 0; i < r->ne; i++)
        if (same_key(&r->e[i], k)) return &r->e[i];
    return NULL;
}

/* Every key once, in order of first appearance over the files: *keys[i] is its first entry. */
static int collect_keys(const report *rs, int n, const rep_entry ***keys) {
    int total = 0, nk = 0;
    for (int i = 0; i < n; i++) total += rs[i].ne;
    *keys = malloc(((size_t)total + 1) * sizeof **keys);
    if (!*keys) return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rs[i].ne; j++) {
            int k = 0;
            while (k < nk && !same_key((*keys)[k], &rs[i].e[j])) k++;
            if (k == nk) (*keys)[nk++] = &rs[i].e[j];
        }
    return nk;
}

/* Distinct strings in order of first appearance (bench names, variants): the plots' colors. */
typedef struct {
    const char *s[256];
    int n;
} names;

static int name_index(names *ns, const char *s) {
    for (int i = 0; i < ns->n; i++)
        if (!strcmp(ns->s[i], s)) return i;
    if (ns->n == 256) return 255;
    ns->s[ns->n] = s;
    return ns->n++;
}

static const char *const colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_COLORS ((int)(sizeof colors / sizeof colors[0]))

/* ---- report.md ---- */

static void md_device(FILE *f, const report *r) {
    md(f, "## ", r->dev_name, "");
    fprintf(f, " (`%s`)\n\n| | |\n|---|---|\n", r->file);
    md(f, "| device | ", r->dev_name, "");
    fprintf(f, " (id %s) |\n", r->dev_id);
    md(f, "| platform | ", r->platform, " |\n");
    md(f, "| driver | ", r->driver, " |\n");
    fprintf(f, "| type | %s |\n| compute units | %.0f |\n| clock | %.0f MHz |\n", r->type, r->compute_units,
            r->clock_mhz);
    md(f, "| library | ", r->version, "");
    fprintf(f, " (commit `%s`) |\n| created | %s |\n| suite | %s v%.0f", r->commit, r->created, r->suite,
            r->suite_version);
    if (r->suite_seconds >= 0) fprintf(f, ", at least %s s per case", num(r->suite_seconds).s);
    fprintf(f, " |\n\n### Peak\n\n| FMA GFLOP/s | copy GB/s | write GB/s | read GB/s | launch us | nominal GFLOP/s "
               "| measured/nominal |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    fprintf(f, "| %s | %s | %s | %s | %s", num(r->fma_gflops).s, num(r->copy_gbs).s, num(r->write_gbs).s,
            num(r->read_gbs).s, num(r->launch_us).s);
    if (r->nominal_gflops > 0)
        fprintf(f, " | %s | %.0f%% |\n", num(r->nominal_gflops).s, 100 * r->fma_gflops / r->nominal_gflops);
    else
        fprintf(f, " | - | - |\n");
    if (*r->nominal_note) md(f, "\nNominal: ", r->nominal_note, "\n");
}

/* Every entry, one table per bench (benches in order of first appearance, entries in file order). */
static void md_entries(FILE *f, const report *r) {
    names benches = {{0}, 0};
    for (int i = 0; i < r->ne; i++) name_index(&benches, r->e[i].bench);
    fprintf(f, "\n### Entries\n");
    if (!r->ne) fprintf(f, "\nNone.\n");
    for (int b = 0; b < benches.n; b++) {
        md(f, "\n#### ", benches.s[b], "");
        fprintf(f, "\n\n| op | shape | variant | median ms | min ms | reps | GFLOP/s | GB/s | rate | roofline |\n"
                   "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < r->ne; i++) {
            const rep_entry *e = &r->e[i];
            if (name_index(&benches, e->bench) != b) continue;
            md(f, "| ", e->op, " | ");
            md(f, "", e->shape, " | ");
            md(f, "", e->variant, "");
            if (e->on_host) fprintf(f, " (host)");
            fprintf(f, " | %s | %s | %d | %s | %s | ", num(e->ms).s, num(e->min_ms).s, e->reps, num(e->gflops).s,
                    num(e->gbs).s);
            if (e->rate > 0) fprintf(f, "%s ", num(e->rate).s);
            md(f, "", e->rate > 0 ? (e->rate_unit ? e->rate_unit : "/s") : "-", "");
            fprintf(f, " | %s |\n", pct(e).s);
        }
    }
    if (!r->nf) return;
    fprintf(f, "\n### Failures\n\n");
    for (int i = 0; i < r->nf; i++) {
        md(f, "- `", r->f[i].bench, "`: ");
        md(f, "", r->f[i].message, "\n");
    }
}

/* Entries matched by key: each file's median and its speed relative to the first (first ms / its ms). */
static int md_comparison(FILE *f, const report *rs, int n) {
    const rep_entry **keys;
    int nk = collect_keys(rs, n, &keys);
    if (nk < 0) return -1;
    fprintf(f, "## Comparison\n\nSpeed: `%s`'s median over the file's (above 1: faster than `%s`).\n\n"
               "| bench | op | shape | variant |", rs[0].file, rs[0].file);
    for (int i = 0; i < n; i++) fprintf(f, i ? " %s ms | %s speed |" : " %s ms |", rs[i].slug, rs[i].slug);
    fprintf(f, "\n|---|---|---|---|");
    for (int i = 0; i < n; i++) fprintf(f, i ? "---:|---:|" : "---:|");
    for (int k = 0; k < nk; k++) {
        const rep_entry *a = find(&rs[0], keys[k]);
        md(f, "\n| ", keys[k]->bench, " | ");
        md(f, "", keys[k]->op, " | ");
        md(f, "", keys[k]->shape, " | ");
        md(f, "", keys[k]->variant, " |");
        for (int i = 0; i < n; i++) {
            const rep_entry *x = find(&rs[i], keys[k]);
            fprintf(f, " %s |", x ? num(x->ms).s : "-");
            if (i && a && x) fprintf(f, " %s |", ratio(a->ms / x->ms).s);
            else if (i) fprintf(f, " - |");
        }
    }
    fprintf(f, "\n\n");
    free(keys);
    return 0;
}

static int has_decode(const report *r) {
    for (int i = 0; i < r->ne; i++)
        if (!strcmp(r->e[i].op, "decode") && r->e[i].context > 0) return 1;
    return 0;
}

static int write_md(FILE *f, const report *rs, int n, int decode) {
    fprintf(f, "# Attamba benchmark report\n\n%d report%s. Suite:\n\n", n, n > 1 ? "s" : "");
    for (int i = 0; i < n; i++) { /* each distinct suite run once */
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = !strcmp(rs[j].suite, rs[i].suite) && rs[j].suite_version == rs[i].suite_version &&
                   !strcmp(rs[j].command, rs[i].command);
        if (seen) continue;
        fprintf(f, "- `%s` version %.0f: ", rs[i].suite, rs[i].suite_version);
        md(f, "`", rs[i].command, "`\n");
    }
    fprintf(f, "\nRoofline: the fraction of min(FMA peak, intensity x copy bandwidth) reached (of the copy bandwidth "
               "for entries without flop), with the bound that sets it.\n\n");
    for (int i = 0; i < n; i++) {
        md_device(f, &rs[i]);
        md_entries(f, &rs[i]);
        fprintf(f, "\n");
    }
    if (n > 1 && md_comparison(f, rs, n)) return -1;
    fprintf(f, "## Plots\n\n");
    for (int i = 0; i < n; i++) {
        fprintf(f, "- [roofline-%s.svg](roofline-%s.svg): ", rs[i].slug, rs[i].slug);
        md(f, "", rs[i].dev_name, "\n");
    }
    if (decode) fprintf(f, "- [decode.svg](decode.svg): decode tokens/s vs context\n");
    return 0;
}

/* ---- SVG plots (hand-written, like bench decode's) ---- */

enum { W = 760, H = 460, L = 70, R = 270, T = 36, B = 50 };

/* A white outline under a label, so that it stays readable over lines and points. */
#define HALO "stroke='white' stroke-width='3' paint-order='stroke'"

static void svg_open(FILE *f, const char *title) {
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' "
               "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n<text x='%d' y='20' "
               "font-size='14'>", W, H, L);
    xml(f, title);
    fprintf(f, "</text>\n<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, H - B, W - R, H - B);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n", L, T, L, H - B);
}

static void svg_axis_titles(FILE *f, const char *x, const char *y) {
    fprintf(f, "<text x='%d' y='%d' text-anchor='middle'>%s</text>\n", (L + W - R) / 2, H - 12, x);
    fprintf(f, "<text x='16' y='%d' text-anchor='middle' transform='rotate(-90 16 %d)'>%s</text>\n</svg>\n",
            (T + H - B) / 2, (T + H - B) / 2, y);
}

/* 10^k as a tick label. */
static str48 decade(int k) {
    str48 t;
    if (k >= -3 && k <= 5) snprintf(t.s, sizeof t.s, "%g", pow(10, k));
    else snprintf(t.s, sizeof t.s, "1e%d", k);
    return t;
}

/* The decades [*lo, *hi] that hold [a, b], at least one and at most max_span wide (kept at the top). */
static void decades(double a, double b, int max_span, int *lo, int *hi) {
    *lo = (int)floor(log10(a));
    *hi = (int)ceil(log10(b));
    if (*hi <= *lo) *hi = *lo + 1;
    if (*hi - *lo > max_span) *lo = *hi - max_span;
}

typedef struct {
    double x0, x1, y0, y1; /* log10 of the axes' ends */
} loglog;

static double px(const loglog *g, double v) {
    double l = fmin(fmax(log10(v), g->x0), g->x1);
    return L + (l - g->x0) / (g->x1 - g->x0) * (W - L - R);
}

static double py(const loglog *g, double v) {
    double l = fmin(fmax(log10(v), g->y0), g->y1);
    return H - B - (l - g->y0) / (g->y1 - g->y0) * (H - T - B);
}

static int plotted(const rep_entry *e) { return e->flop > 0 && e->bytes > 0 && e->gflops > 0; }

/* roofline-<slug>.svg: GFLOP/s against flop per byte with the roof min(FMA peak, x * copy bandwidth);
 * points colored by bench (colors shared by every report's plot), hollow for entries run on the host. */
static void write_roofline(FILE *f, const report *r, names *benches) {
    double fma = r->fma_gflops, copy = r->copy_gbs, ridge = fma / copy;
    double xa = ridge / 30, xb = ridge, ya = fma / 30, yb = fma; /* show a stretch of the memory slope */
    for (int i = 0; i < r->ne; i++) {
        const rep_entry *e = &r->e[i];
        if (!plotted(e)) continue;
        xa = fmin(xa, e->flop / e->bytes), xb = fmax(xb, e->flop / e->bytes);
        ya = fmin(ya, e->gflops), yb = fmax(yb, e->gflops);
    }
    int x0, x1, y0, y1;
    decades(xa, xb, 8, &x0, &x1);
    decades(ya, 2 * yb, 7, &y0, &y1);
    loglog g = {x0, x1, y0, y1};
    char title[320];
    snprintf(title, sizeof title, "roofline: %s (%s)", r->dev_name, r->slug);
    svg_open(f, title);
    for (int k = x0; k <= x1; k++)
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#ddd'/><text x='%.1f' y='%d' "
                   "text-anchor='middle'>%s</text>\n", px(&g, pow(10, k)), px(&g, pow(10, k)), T, H - B,
                px(&g, pow(10, k)), H - B + 18, decade(k).s);
    for (int k = y0; k <= y1; k++)
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/><text x='%d' y='%.1f' "
                   "text-anchor='end'>%s</text>\n", L, W - R, py(&g, pow(10, k)), py(&g, pow(10, k)), L - 6,
                py(&g, pow(10, k)) + 4, decade(k).s);
    /* the roof: from where the memory slope enters the plot, over the ridge, to the right edge */
    double xs = fmax(pow(10, g.x0), pow(10, g.y0) / copy), xe = pow(10, g.x1);
    fprintf(f, "<polyline fill='none' stroke='black' stroke-width='2' points='%.1f,%.1f ", px(&g, xs),
            py(&g, fmin(fma, xs * copy)));
    if (ridge > xs && ridge < xe) fprintf(f, "%.1f,%.1f ", px(&g, ridge), py(&g, fma));
    fprintf(f, "%.1f,%.1f'/>\n", px(&g, xe), py(&g, fmin(fma, xe * copy)));
    int used[256] = {0}, host = 0;
    for (int i = 0; i < r->ne; i++) {
        const rep_entry *e = &r->e[i];
        if (!plotted(e)) continue;
        int b = name_index(benches, e->bench);
        used[b] = 1;
        host |= e->on_host;
        const char *c = colors[b % N_COLORS];
        fprintf(f, "<circle cx='%.1f' cy='%.1f' r='4' fill='%s' stroke='%s'><title>", px(&g, e->flop / e->bytes),
                py(&g, e->gflops), e->on_host ? "none" : c, c);
        xml(f, e->bench);
        fprintf(f, " ");
        xml(f, e->op);
        fprintf(f, " ");
        xml(f, e->shape);
        fprintf(f, " ");
        xml(f, e->variant);
        fprintf(f, ": %s GFLOP/s, %s</title></circle>\n", num(e->gflops).s, pct(e).s);
    }
    /* the ceilings' labels over the points */
    fprintf(f, "<text x='%d' y='%.1f' text-anchor='end' %s>FMA peak %s GFLOP/s</text>\n", W - R - 4, py(&g, fma) - 6,
            HALO, num(fma).s);
    double xm = sqrt(xs * fmin(fmax(ridge, xs), xe)); /* the middle of the visible slope */
    double dy = (double)(H - T - B) / (g.y1 - g.y0), dx = (double)(W - L - R) / (g.x1 - g.x0); /* px per decade */
    double ang = atan2(dy, dx) * 57.29577951308232;                                           /* degrees */
    double lx = px(&g, xm), ly = py(&g, fmin(fma, xm * copy)) - 6;
    fprintf(f, "<text x='%.1f' y='%.1f' text-anchor='middle' transform='rotate(%.1f %.1f %.1f)' %s>copy %s GB/s"
               "</text>\n", lx, ly, -ang, lx, ly, HALO, num(copy).s);
    int row = 0;
    for (int b = 0; b < benches->n; b++) {
        if (!used[b]) continue;
        int y = T + 16 * row++;
        fprintf(f, "<circle cx='%d' cy='%d' r='4' fill='%s'/><text x='%d' y='%d'>", W - R + 20, y, colors[b % N_COLORS],
                W - R + 30, y + 4);
        xml(f, benches->s[b]);
        fprintf(f, "</text>\n");
    }
    if (host)
        fprintf(f, "<circle cx='%d' cy='%d' r='4' fill='none' stroke='black'/><text x='%d' y='%d'>on the host</text>\n",
                W - R + 20, T + 16 * row, W - R + 30, T + 16 * row + 4);
    svg_axis_titles(f, "arithmetic intensity (flop/byte)", "GFLOP/s");
}

/* The 1-2-5 step at or below v (at or above it when up). */
static double step125(double v, int up) {
    double p = pow(10, floor(log10(v))), m = v / p;
    if (up) return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
    return (m >= 5 ? 5 : m >= 2 ? 2 : 1) * p;
}

/* A decode entry's tokens/s: its rate, else one token per median time. */
static double tokens_per_s(const rep_entry *e) { return e->rate > 0 ? e->rate : 1e3 / e->ms; }

static int is_decode(const rep_entry *e) { return !strcmp(e->op, "decode") && e->context > 0; }

static int by_context(const void *a, const void *b) {
    double x = (*(const rep_entry *const *)a)->context, y = (*(const rep_entry *const *)b)->context;
    return (x > y) - (x < y);
}

static str48 context_label(double c) {
    str48 t;
    if (c >= 1024 && fmod(c, 1024) == 0) snprintf(t.s, sizeof t.s, "%.0fK", c / 1024);
    else snprintf(t.s, sizeof t.s, "%.0f", c);
    return t;
}

/* decode.svg: tokens/s against context (log-log), one line per report x variant: the variant sets the
 * color, the report the dash pattern. */
static int write_decode(FILE *f, const report *rs, int n) {
    static const char *const dashes[] = {"", "8 4", "2 3", "8 3 2 3"};
    double cmin = INFINITY, cmax = 0, ymin = INFINITY, ymax = 0;
    int total = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rs[i].ne; j++)
            if (is_decode(&rs[i].e[j])) {
                cmin = fmin(cmin, rs[i].e[j].context), cmax = fmax(cmax, rs[i].e[j].context);
                ymin = fmin(ymin, tokens_per_s(&rs[i].e[j])), ymax = fmax(ymax, tokens_per_s(&rs[i].e[j]));
                total++;
            }
    const rep_entry **pts = malloc((size_t)total * sizeof *pts), **ticks = malloc((size_t)total * sizeof *ticks);
    if (!pts || !ticks) return free(pts), free(ticks), -1;
    double lx0 = log10(cmin) - 0.1, lx1 = log10(cmax) + 0.1;
    /* log y (devices differ by orders of magnitude) from the 1-2-5 step below the slowest to the one above
     * the fastest, with a tick at every 1-2-5 step */
    loglog g = {0, 1, log10(step125(ymin, 0)), log10(step125(ymax * 1.05, 1))};
#define X(c) (L + (log10(c) - lx0) / (lx1 - lx0) * (W - L - R))
    svg_open(f, "decode tokens/s vs context (log-log)");
    for (int k = (int)floor(g.y0); k <= (int)ceil(g.y1); k++)
        for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) {
            double v = m * pow(10, k);
            if (log10(v) < g.y0 - 1e-9 || log10(v) > g.y1 + 1e-9) continue;
            fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#ddd'/><text x='%d' y='%.1f' "
                       "text-anchor='end'>%s</text>\n", L, W - R, py(&g, v), py(&g, v), L - 6, py(&g, v) + 4,
                    num(v).s);
        }
    int nt = 0; /* a tick at every context measured */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rs[i].ne; j++)
            if (is_decode(&rs[i].e[j])) ticks[nt++] = &rs[i].e[j];
    qsort(ticks, (size_t)nt, sizeof *ticks, by_context);
    for (int t = 0; t < nt; t++)
        if (!t || ticks[t]->context != ticks[t - 1]->context)
            fprintf(f, "<text x='%.1f' y='%d' text-anchor='middle'>%s</text>\n", X(ticks[t]->context), H - B + 18,
                    context_label(ticks[t]->context).s);
    names variants = {{0}, 0};
    int row = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < rs[i].ne; j++) { /* a series starts at its variant's first decode entry */
            const rep_entry *e = &rs[i].e[j];
            int first = is_decode(e);
            for (int k = 0; k < j && first; k++)
                first = !(is_decode(&rs[i].e[k]) && !strcmp(rs[i].e[k].variant, e->variant));
            if (!first) continue;
            int np = 0;
            for (int k = j; k < rs[i].ne; k++)
                if (is_decode(&rs[i].e[k]) && !strcmp(rs[i].e[k].variant, e->variant)) pts[np++] = &rs[i].e[k];
            qsort(pts, (size_t)np, sizeof *pts, by_context);
            const char *c = colors[name_index(&variants, e->variant) % N_COLORS], *d = dashes[i % 4];
            fprintf(f, "<polyline fill='none' stroke-width='2' stroke='%s' stroke-dasharray='%s' points='", c, d);
            for (int k = 0; k < np; k++)
                fprintf(f, "%s%.1f,%.1f", k ? " " : "", X(pts[k]->context), py(&g, tokens_per_s(pts[k])));
            int y = T + (n > 1 ? 30 : 16) * row++; /* with several reports, the report's name below */
            fprintf(f, "'/>\n<line x1='%d' x2='%d' y1='%d' y2='%d' stroke-width='2' stroke='%s' "
                       "stroke-dasharray='%s'/><text x='%d' y='%d'>", W - R + 10, W - R + 34, y, y, c, d, W - R + 40,
                    y + 4);
            xml(f, e->variant);
            fprintf(f, "</text>\n");
            if (n == 1) continue;
            fprintf(f, "<text x='%d' y='%d' font-size='10' fill='#555'>", W - R + 40, y + 16);
            xml(f, rs[i].slug);
            fprintf(f, "</text>\n");
        }
    }
#undef X
    svg_axis_titles(f, "context (tokens)", "decode tokens/s");
    free(pts);
    free(ticks);
    return 0;
}

/* ---- writing the directory ---- */

/* A writer of one output file from all the reports; arg: the decode flag, or the report to plot. */
typedef int (*write_fn)(FILE *f, const report *rs, int n, int arg);

/* Writes dir/name with fn via dir/name.tmp and rename; 0 on success. */
static int write_file(const char *dir, const char *name, write_fn fn, const report *rs, int n, int arg, char *err,
                      size_t err_size) {
    char path[4096], tmp[4110];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return snprintf(err, err_size, "cannot write %s", tmp), -1;
    int ok = fn(f, rs, n, arg) == 0 && !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        return snprintf(err, err_size, "cannot write %s", path), -1;
    }
    return 0;
}

static int md_fn(FILE *f, const report *rs, int n, int decode) { return write_md(f, rs, n, decode); }

static int roofline_fn(FILE *f, const report *rs, int n, int i) {
    names benches = {{0}, 0}; /* colors by order of first appearance over every report */
    for (int k = 0; k < n; k++)
        for (int j = 0; j < rs[k].ne; j++) name_index(&benches, rs[k].e[j].bench);
    write_roofline(f, &rs[i], &benches);
    return 0;
}

static int decode_fn(FILE *f, const report *rs, int n, int unused) { return write_decode(f, rs, n); }

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The *.json names in dir (not hidden), sorted; NULL with *n = -1 when dir cannot be read. */
static char **json_names(const char *dir, int *n) {
    DIR *d = opendir(dir);
    *n = -1;
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    *n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json")) continue;
        if (*n == cap) {
            char **w = realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!w) break;
            v = w;
        }
        if (!(v[*n] = malloc(len + 1))) break;
        memcpy(v[(*n)++], de->d_name, len + 1);
    }
    closedir(d);
    if (*n) qsort(v, (size_t)*n, sizeof *v, by_name);
    return v;
}

/* The file's base name without .json, with every character but [A-Za-z0-9._-] as '-'. */
static void make_slug(report *r) {
    size_t n = strlen(r->file) - 5, i;
    for (i = 0; i < n && i + 1 < sizeof r->slug; i++) {
        char c = r->file[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                 c == '-';
        r->slug[i] = ok ? c : '-';
    }
    r->slug[i] = 0;
}

int bench_report_write(const char *dir, char *err, size_t err_size) {
    int nn, n = 0, rc = 0, decode = 0;
    char **files = json_names(dir, &nn);
    if (nn < 0) return snprintf(err, err_size, "cannot read the directory %s", dir), -1;
    report *rs = calloc((size_t)nn + 1, sizeof *rs);
    if (!rs) rc = snprintf(err, err_size, "out of memory");
    for (int i = 0; i < nn && !rc; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        int s = report_load(path, files[i], 0, &rs[n], err, err_size);
        if (s < 0) rc = -1;
        if (s) report_free(&rs[n]);
        else make_slug(&rs[n++]);
    }
    for (int i = 0; i < n && !rc; i++)
        for (int j = 0; j < i && !rc; j++)
            if (!strcmp(rs[i].slug, rs[j].slug))
                rc = snprintf(err, err_size, "%s and %s: the same plot name %s", rs[j].file, rs[i].file, rs[i].slug);
    if (!rc && !n) rc = snprintf(err, err_size, "no attamba-bench reports (*.json) in %s", dir);
    for (int i = 0; i < n; i++) decode |= has_decode(&rs[i]);
    if (!rc) rc = write_file(dir, "report.md", md_fn, rs, n, decode, err, err_size);
    for (int i = 0; i < n && !rc; i++) {
        char name[300];
        snprintf(name, sizeof name, "roofline-%s.svg", rs[i].slug);
        rc = write_file(dir, name, roofline_fn, rs, n, i, err, err_size);
    }
    if (!rc && decode) rc = write_file(dir, "decode.svg", decode_fn, rs, n, 0, err, err_size);
    for (int i = 0; i < n; i++) report_free(&rs[i]);
    for (int i = 0; i < nn; i++) free(files[i]);
    free(files);
    free(rs);
    return rc ? -1 : 0;
}

int bench_report_main(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) argc = 0;
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(argc ? stderr : stdout,
                "usage: attamba bench report DIR\n\nReads the attamba-bench reports (*.json) of `attamba bench suite` "
                "in DIR and writes\nDIR/report.md, DIR/roofline-<name>.svg per report and DIR/decode.svg (with "
                "decode entries).\n");
        return argc ? 2 : 0;
    }
    char err[1024];
    if (bench_report_write(argv[1], err, sizeof err)) {
        fprintf(stderr, "attamba bench report: %s\n", err);
        return 1;
    }
    printf("wrote %s/report.md\n", argv[1]);
    return 0;
}

/* ---- attamba bench compare ---- */

static void compare_header(const report *rs, int n) {
    for (int i = 0; i < n; i++) {
        const report *r = &rs[i];
        printf("[%d] %s: ", i + 1, r->file);
        if (r->is_report)
            printf("%s (%s), commit %s, suite %s v%.0f, %s\n", r->dev_name, r->dev_id, r->commit, r->suite,
                   r->suite_version, r->created);
        else if (r->ne)
            printf("%s, entries of one bench run (no suite)\n",
                   cJSON_GetObjectItemCaseSensitive(r->root->child, "device")->valuestring);
        else
            printf("no entries\n");
    }
}

static int compare_print(const report *rs, int n) {
    const rep_entry **keys;
    int nk = collect_keys(rs, n, &keys);
    if (nk < 0) return 1;
    int w[4] = {5, 2, 5, 7};
    for (int k = 0; k < nk; k++) {
        const char *s[4] = {keys[k]->bench, keys[k]->op, keys[k]->shape, keys[k]->variant};
        for (int c = 0; c < 4; c++)
            if ((int)strlen(s[c]) > w[c]) w[c] = (int)strlen(s[c]);
    }
    compare_header(rs, n);
    printf("\n%-*s  %-*s  %-*s  %-*s", w[0], "bench", w[1], "op", w[2], "shape", w[3], "variant");
    for (int i = 0; i < n; i++) {
        char ms[16], roof[24], speed[24];
        snprintf(ms, sizeof ms, "[%d] ms", i + 1);
        snprintf(roof, sizeof roof, "[%d] roofline", i + 1);
        snprintf(speed, sizeof speed, "[%d] speed", i + 1);
        printf("  %12s %-12s", ms, roof);
        if (i) printf(" %12s", speed);
    }
    printf("\n");
    double *logsum = calloc((size_t)n, sizeof *logsum);
    int *matched = calloc((size_t)n, sizeof *matched);
    for (int k = 0; k < nk && logsum && matched; k++) {
        printf("%-*s  %-*s  %-*s  %-*s", w[0], keys[k]->bench, w[1], keys[k]->op, w[2], keys[k]->shape, w[3],
               keys[k]->variant);
        const rep_entry *a = find(&rs[0], keys[k]);
        for (int i = 0; i < n; i++) {
            const rep_entry *x = find(&rs[i], keys[k]);
            printf("  %12s %-12s", x ? num(x->ms).s : "-", x ? pct(x).s : "-");
            if (!i) continue;
            if (a && x) {
                printf(" %12s", ratio(a->ms / x->ms).s);
                logsum[i] += log(a->ms / x->ms);
                matched[i]++;
            } else {
                printf(" %12s", "-");
            }
        }
        printf("\n");
    }
    printf("\ngeometric mean speed vs [1]:");
    for (int i = 1; i < n && logsum && matched; i++) {
        if (matched[i]) printf("  [%d] %s over %d entries", i + 1, ratio(exp(logsum[i] / matched[i])).s, matched[i]);
        else printf("  [%d] - (no entries in common)", i + 1);
    }
    printf("\n");
    int rc = !logsum || !matched;
    free(logsum);
    free(matched);
    free(keys);
    return rc;
}

int bench_compare_main(int argc, char **argv) {
    int help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    if (argc < 3 || help) {
        fprintf(help ? stdout : stderr,
                "usage: attamba bench compare A.json B.json [C.json ...]\n\n"
                "Prints the entries of suite reports (or of `attamba bench <name> --json` arrays) side by\n"
                "side, matched by (bench, op, shape, variant): each file's median ms and roofline fraction,\n"
                "and its speed relative to A (A's ms over its ms; above 1: faster than A).\n");
        return help ? 0 : 2;
    }
    int n = argc - 1, rc = 0;
    report *rs = calloc((size_t)n, sizeof *rs);
    if (!rs) return 1;
    char err[1024];
    for (int i = 0; i < n && !rc; i++) {
        int s = report_load(argv[i + 1], argv[i + 1], 1, &rs[i], err, sizeof err);
        if (s > 0)
            snprintf(err, sizeof err, "%s: neither an attamba-bench report nor an array of entries", argv[i + 1]);
        if (s) {
            fprintf(stderr, "attamba bench compare: %s\n", err);
            rc = 1;
        }
    }
    if (!rc) rc = compare_print(rs, n);
    for (int i = 0; i < n; i++) report_free(&rs[i]);
    free(rs);
    return rc;
}
