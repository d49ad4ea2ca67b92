/* Reference cross-entropy, argmax and the sampling filter/draw; see ref_loss.h. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "ref_loss.h"

int64_t ref_cross_entropy(int64_t N, int V, const float *logits, const int32_t *targets, int ignore_id,
                          double *losses, double *lse, double *mean) {
    double sum = 0;
    int64_t counted = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *row = logits + i * V;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) m = fmax(m, row[j]);
        for (int j = 0; j < V; j++) s += exp((double)row[j] - m);
        double l = m + log(s), loss;
        int t = targets[i];
        if (t == ignore_id) {
            loss = 0;
        } else if (t < 0 || t >= V) {
            loss = NAN;
        } else {
            loss = l - row[t];
            sum += loss;
            counted++;
        }
        if (losses) losses[i] = loss;
        if (lse) lse[i] = l;
    }
    if (mean) *mean = counted ? sum / (double)counted : 0.0;
    return counted;
}

/* Max-subtracted log-sum-exp of a double row. */
static double row_lse_d(int V, const double *row) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < V; j++) m = fmax(m, row[j]);
    for (int j = 0; j < V; j++) s += exp(row[j] - m);
    return m + log(s);
}

void ref_cross_entropy_backward(int64_t N, int V, const float *logits, const int32_t *targets, int ignore_id,
                                double scale, double *dlogits) {
    for (int64_t i = 0; i < N; i++) {
        double *d = dlogits + i * V;
        for (int j = 0; j < V; j++) d[j] = logits[i * V + j];
        int t = targets[i];
        if (t == ignore_id) {
            for (int j = 0; j < V; j++) d[j] = 0;
            continue;
        }
        double l = row_lse_d(V, d), s = t < 0 || t >= V ? NAN : scale;
        for (int j = 0; j < V; j++) d[j] = s * (exp(d[j] - l) - (j == t));
    }
}

double ref_cross_entropy_loss_d(int64_t N, int V, const double *logits, const int32_t *targets, int ignore_id,
                                double scale) {
    double sum = 0;
    for (int64_t i = 0; i < N; i++) {
        int t = targets[i];
        if (t == ignore_id) continue;
        sum += t < 0 || t >= V ? NAN : row_lse_d(V, logits + i * V) - logits[i * V + t];
    }
    return scale * sum;
}

/* NaN first, then larger values, then smaller indices. */
static int argmax_before(float v, int i, float w, int j) {
    if (isnan(v) || isnan(w)) return isnan(v) && (!isnan(w) || i < j);
    return v > w || (v == w && i < j);
}

void ref_argmax(int64_t B, int V, const float *logits, int32_t *out) {
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        int best = 0;
        for (int j = 1; j < V; j++)
            if (argmax_before(row[j], j, row[best], best)) best = j;
        out[b] = best;
    }
}

/* Token a ranks after token b: smaller probability, or equal and a larger index. */
static int ranks_after(const double *p, int32_t a, int32_t b) { return p[a] < p[b] || (p[a] == p[b] && a > b); }

/* Sift h[i] down a heap of n whose root ranks last (the worst token on top). */
static void sift_down(const double *p, int32_t *h, int n, int i) {
    for (;;) {
        int w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_after(p, h[l], h[w])) w = l;
        if (r < n && ranks_after(p, h[r], h[w])) w = r;
        if (w == i) return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Heap sort of h[0..n) into ranking order (best first); no globals, so it is reentrant. */
static void sort_by_rank(const double *p, int32_t *h, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(p, h, n, i);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = h[0];
        h[0] = h[end];
        h[end] = t;
        sift_down(p, h, end, 0);
    }
}

/* The best k tokens of all V, sorted best first, into order[0..k): a size-k heap with the worst
 * token on top, O(V log k). */
static void top_k_sorted(const double *p, int V, int k, int32_t *order) {
    for (int i = 0; i < k; i++) order[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(p, order, k, i);
    for (int i = k; i < V; i++)
        if (ranks_after(p, order[0], i)) {
            order[0] = i;
            sift_down(p, order, k, 0);
        }
    sort_by_rank(p, order, k);
}

/* Walks order[0..m) (best first) and returns how many tokens the top-p cut keeps: the smallest
 * prefix with mass >= top_p * total; m + 1 when the candidates run out first. */
static int top_p_prefix(const double *p, const int32_t *order, int m, double top_p, double total) {
    double cum = 0, want = top_p * total;
    for (int j = 0; j < m; j++) {
        cum += p[order[j]];
        if (cum >= want) return j + 1;
    }
    return m + 1;
}

int ref_sample_filter(int V, double *p, int top_k, float top_p, int32_t *order) {
    int use_k = top_k > 0 && top_k < V, use_p = top_p < 1.0f;
    int kept = V;
    if (use_k) {
        top_k_sorted(p, V, top_k, order);
        kept = top_k;
        if (use_p) {
            double mass = 0;
            for (int j = 0; j < kept; j++) mass += p[order[j]];
            int n = top_p_prefix(p, order, kept, top_p, mass);
            kept = n > kept ? kept : n;
        }
    } else if (use_p) {
        /* Only a prefix of the ranking is needed. Every token below t = 0.1 * total / V ranks after
         * every token at or above it, and all of those below hold < 0.1 of the mass, so for
         * top_p <= 0.9 the prefix lies among the tokens >= t: sort only those. If the prefix does
         * not end there (top_p > 0.9, or rounding), sort all V. */
        double total = 0;
        for (int i = 0; i < V; i++) total += p[i];
        double t = 0.1 * total / V;
        int m = 0;
        for (int i = 0; i < V; i++)
            if (p[i] >= t) order[m++] = i;
        sort_by_rank(p, order, m);
        kept = top_p_prefix(p, order, m, top_p, total);
        if (kept > m) {
            for (int i = 0; i < V; i++) order[i] = i;
            sort_by_rank(p, order, V);
            kept = top_p_prefix(p, order, V, top_p, total);
            if (kept > V) kept = V; /* rounding: the whole mass is just below top_p * total */
        }
    }
    int nonzero = 0;
    if (kept == V) {
        double total = 0;
        for (int i = 0; i < V; i++) total += p[i];
        for (int i = 0; i < V; i++) {
            p[i] /= total;
            nonzero += p[i] > 0;
        }
        return nonzero;
    }
    /* Mark the kept tokens by negating them (all p >= 0), then zero the rest and flip the marks
     * back: membership without a second scratch array. A kept 0 stays 0 either way. */
    double mass = 0;
    for (int j = 0; j < kept; j++) {
        mass += p[order[j]];
        p[order[j]] = -p[order[j]];
    }
    for (int i = 0; i < V; i++) {
        p[i] = p[i] < 0 ? -p[i] / mass : 0.0;
        nonzero += p[i] > 0;
    }
    return nonzero;
}

int ref_sample_probs(int V, const float *logits, float temperature, int top_k, float top_p, double *probs,
                     int32_t *order) {
    if (!(temperature > 0)) {
        int32_t best;
        ref_argmax(1, V, logits, &best);
        for (int i = 0; i < V; i++) probs[i] = i == best;
        return 1;
    }
    double m = -INFINITY;
    for (int i = 0; i < V; i++) m = fmax(m, logits[i]);
    for (int i = 0; i < V; i++) probs[i] = exp(((double)logits[i] - m) / temperature);
    return ref_sample_filter(V, probs, top_k, top_p, order);
}

int ref_sample_min_p(int V, double *p, float min_p) {
    double top = 0, mass = 0;
    for (int i = 0; i < V; i++) top = fmax(top, p[i]);
    double cut = min_p > 0 ? (double)min_p * top : 0;
    for (int i = 0; i < V; i++) {
        if (p[i] < cut) p[i] = 0;
        mass += p[i];
    }
    int kept = 0;
    for (int i = 0; i < V; i++) {
        p[i] /= mass;
        kept += p[i] > 0;
    }
    return kept;
}

void ref_repetition_penalty(int V, float *logits, const int32_t *hist, int n, float penalty) {
    unsigned char *done = calloc((size_t)V, 1); /* each distinct token once */
    for (int j = 0; j < n; j++) {
        int t = hist[j], seen = 0;
        if (t < 0 || t >= V) continue;
        if (done) seen = done[t], done[t] = 1;
        else /* no memory for the marks: look back instead */
            for (int e = 0; e < j && !seen; e++) seen = hist[e] == t;
        if (!seen) logits[t] = logits[t] > 0 ? logits[t] / penalty : logits[t] * penalty;
    }
    free(done);
}

int ref_sample_draw(int V, const double *p, double u) {
    double total = 0;
    for (int i = 0; i < V; i++) total += p[i];
    double target = u * total, cum = 0;
    int last = 0;
    for (int i = 0; i < V; i++) {
        if (!(p[i] > 0)) continue;
        cum += p[i];
        last = i;
        if (cum > target) return i;
    }
    return last; /* rounding: u * total reached the full sum */
}

double ref_uniform53(uint64_t bits) { return (double)(bits >> 11) * (1.0 / 9007199254740992.0); }
