#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>

#include "checkpoint.h"
#include "data.h"
#include "parallel.h"
#include "run.h"

attamba_status train_eval(model *m, const dataset *d, int64_t begin, int64_t end, int T, int B, int n_windows,
                          double *loss) {
    return train_eval_replicas(&m, 1, d, begin, end, T, B, n_windows, loss);
}

attamba_status train_eval_replicas(model *const *ms, int n, const dataset *d, int64_t begin, int64_t end, int T, int B,
                                   int n_windows, double *loss) {
    const model *m = ms[0];
    rt_ctx *ctx = m->ctx;
    int64_t avail = (end - begin) / T;
    if (avail < 1) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "eval: %lld tokens are fewer than one window of %d",
                                  (long long)(end - begin), T);
    if (n_windows <= 0 || n_windows > avail) n_windows = (int)avail;
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
    if (!tok || !tgt) {
        free(tok);
        free(tgt);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    double total = 0;
    int64_t counted = 0;
    attamba_status s = ATTAMBA_OK;
    for (int w0 = 0; w0 < n_windows && !s; w0 += B) {
        int nb = n_windows - w0 < B ? n_windows - w0 : B;
        for (int b = 0; b < nb; b++) data_window(d, begin + (int64_t)(w0 + b) * T, T, m->cfg.bos_id, tok + b * T, tgt + b * T);
        double sum;
        int64_t count;
        s = model_loss_replicas(ms, n, tok, tgt, nb, T, &sum, &count);
        if (!s) {
            total += sum;
            counted += count;
        }
    }
    free(tok);
    free(tgt);
    if (!s) *loss = counted ? total / (double)counted : 0;
    return s;
}

/* Keeps the whole lines of metrics.jsonl up to `step` (a resumed run rewrites what came after). */
static void metrics_truncate(const char *path, int64_t step) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *o = tmp ? fopen(tmp, "w") : NULL;
    char line[4096];
    while (o && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"step\":");
        size_t n = strlen(line);
        /* a line cut short by a kill is dropped, as is anything after the checkpoint's step */
        if (!p || n < 2 || strcmp(line + n - 2, "}\n") != 0 || strtoll(p + 7, NULL, 10) > step) continue;
        fputs(line, o);
    }
    fclose(f);
    if (o && fclose(o) == 0) rename(tmp, path);
    free(tmp);
}

/* Whether the data holds a training window of seq + 1 tokens (and a validation window); says why not. */
static int windows_fit(rt_ctx *ctx, const dataset *d, int64_t train_end, int seq, const train_run_opts *o) {
    if (d->example && seq != d->example) {
        rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s holds examples of %d tokens: train on them with --seq %d", o->data,
                d->example, d->example);
        return 0;
    }
    if (train_end >= (int64_t)seq + !d->example && (o->val_frac <= 0 || d->n - train_end >= seq)) return 1;
    rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %lld tokens are too few for windows of %d with a validation fraction of %g",
            o->data, (long long)d->n, seq, o->val_frac);
    return 0;
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* The processes agree on where they start (all resumed the same step, none failed) and take rank
 * 0's state: its weights and moments, and its data order and counters. */
static attamba_status join_ranks(rt_ctx *ctx, const train_comm *comm, attamba_status s, dp_trainer *dp,
                                 train_progress *p, const char *out) {
    if (!comm || comm->size < 2) return s;
    double v[3] = {s != ATTAMBA_OK, (double)p->step, (double)p->step * (double)p->step};
    if (comm->sum_f64(comm->user, v, 3)) return rt_fail(ctx, ATTAMBA_ERR_IO, "the processes cannot agree on a start");
    if (s) return s;
    if (v[0] > 0) return rt_fail(ctx, ATTAMBA_ERR_IO, "%g of the %d processes failed to start", v[0], comm->size);
    double mean = v[1] / comm->size;
    if (v[2] / comm->size - mean * mean > 0.25) /* the steps differ */
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                       "the processes found different checkpoints in %s: it must be one directory every rank sees", out);
    RT_TRY(dp_sync(dp));
    if (comm->bcast(comm->user, p, sizeof *p)) return rt_fail(ctx, ATTAMBA_ERR_IO, "broadcasting the data order failed");
    return ATTAMBA_OK;
}

attamba_status train_run(rt_ctx *const *ctxs, int n_ctx, const model_config *cfg, const train_hparams *h_in,
                         const train_run_opts *o, double *final_val) {
    rt_ctx *ctx = ctxs[0];
    const train_comm *comm = o->comm && o->comm->size > 1 ? o->comm : NULL;
    int ranks = comm ? comm->size : 1, lead = !comm || comm->rank == 0;
    char err[700];
    dataset d;
    if (data_open(o->data, &d, err, sizeof err)) return rt_fail(ctx, ATTAMBA_ERR_IO, "%s", err);
    train_hparams h = *h_in;
    int64_t train_end = data_train_end(&d, o->val_frac);
    if (!windows_fit(ctx, &d, train_end, h.seq, o)) {
        data_close(&d);
        return ATTAMBA_ERR_INVALID_ARG;
    }
    if (lead && core_mkdirs(o->out) != 0) {
        data_close(&d);
        return rt_fail(ctx, ATTAMBA_ERR_IO, "cannot create %s", o->out);
    }
    model *m = NULL;
    trainer *t = NULL; /* the model's own, on device 0: what checkpoints save */
    dp_trainer *dp = NULL;
    train_progress p = {0};
    attamba_status s;
    int first_row = 0, resumed = o->resume && checkpoint_exists(o->out);
    train_hparams mine; /* h with this process's rows [first_row, first_row + mine.batch) of each micro-batch */
    if (resumed) {
        train_hparams saved;
        s = checkpoint_load(ctx, o->out, &m, &saved, &p, err, sizeof err);
        if (s) rt_fail(ctx, s, "resume: %s", err);
        if (!s) {
            saved.steps = h.steps > saved.steps ? h.steps : saved.steps; /* allow extending a finished run */
            h = saved; /* the checkpoint's window length replaces the command line's: check it again */
            if (!windows_fit(ctx, &d, train_end, h.seq, o)) s = ATTAMBA_ERR_INVALID_ARG;
        }
    } else {
        s = model_create(ctx, cfg, &m);
        if (!s) s = model_init_random(m, o->seed);
        p.seed = o->seed;
        core_rng_seed(&p.rng, o->seed ^ 0xda7a0dadULL);
    }
    if (!s && m->cfg.tokenizer != TOKENIZER_BYTES && !d.map && !d.example) /* a text file: read as bytes */
        s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                    "%s is a text file, which train reads as bytes, but the model's tokenizer is %s: make a token "
                    "file with `attamba tokenize --tokenizer %s --data %s --out FILE.tok` and train on that",
                    o->data, model_tokenizer_name(m->cfg.tokenizer), m->cfg.tokenizer_path, o->data);
    if (!s && h.batch < ranks)
        s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "a batch of %d rows cannot be shared by %d processes", h.batch, ranks);
    if (!s && ranks > CORE_SPLIT_MAX) s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "at most %d processes", CORE_SPLIT_MAX);
    if (!s) {
        int share[CORE_SPLIT_MAX], rank = comm ? comm->rank : 0;
        double equal[CORE_SPLIT_MAX] = {0}; /* no weights: equal shares */
        core_split(equal, ranks, h.batch, share);
        for (int r = 0; r < rank; r++) first_row += share[r];
        mine = h;
        mine.batch = share[rank];
    }
    if (!s) s = dp_create(ctxs, n_ctx, m, &mine, comm, &dp);
    if (!s) t = dp_primary(dp);
    if (!s && resumed && (s = checkpoint_load_moments(o->out, t, err, sizeof err)))
        rt_fail(ctx, s, "resume: %s", err);
    s = join_ranks(ctx, comm, s, dp, &p, o->out);
    if (!s && o->progress && lead && resumed) fprintf(stderr, "resuming %s at step %lld\n", o->out, (long long)p.step);
    char *metrics_path = core_strdup_printf("%s/metrics.jsonl", o->out);
    if (!s && lead) metrics_truncate(metrics_path, p.step);
    FILE *metrics = s || !lead ? NULL : fopen(metrics_path, "a");
    if (!s && lead && !metrics) s = rt_fail(ctx, ATTAMBA_ERR_IO, "cannot open %s", metrics_path);
    int B = h.batch, T = h.seq;
    int32_t *tok = malloc((size_t)B * T * sizeof *tok), *tgt = malloc((size_t)B * T * sizeof *tgt);
    if (!s && (!tok || !tgt)) s = rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    double val = NAN, t_start = core_now() - p.seconds, last_loss = NAN;
    double first_secs = 0, warm_secs = 0; /* this session's first step (it builds the kernels), and the others */
    int64_t start_step = p.step;
    while (!s && p.step < h.steps) {
        int64_t step = p.step + 1;
        double t_step = core_now();
        double grad_norm = 0, sums[2] = {0, 0}; /* this process's part of the step's loss; a stop request */
        float lr = 0;
        s = dp_zero_grad(dp);
        for (int a = 0; a < h.accum && !s; a++) {
            /* every process draws the whole global batch (the same windows) and computes its rows */
            for (int b = 0; b < B; b++)
                data_window(&d, data_random_start(&d, &p.rng, 0, train_end, T), T, m->cfg.bos_id, tok + b * T, tgt + b * T);
            int64_t scored = 0, here = 0;
            for (int64_t k = 0; k < (int64_t)B * T; k++) {
                int counts = tgt[k] != h.ignore_id;
                scored += counts;
                here += counts && k >= (int64_t)first_row * T && k < (int64_t)(first_row + mine.batch) * T;
            }
            double loss;
            int64_t count;
            float share = scored ? (float)((double)here / (double)scored) : 0.0f;
            s = dp_forward_backward(dp, tok + (int64_t)first_row * T, tgt + (int64_t)first_row * T,
                                    share / (float)h.accum, &loss, &count);
            if (!s && scored) sums[0] += loss * (double)count / (double)scored;
            char split[600];
            if (!s && n_ctx > 1 && dp_describe_split(dp, split, sizeof split) && o->progress && lead)
                fprintf(stderr, "\rsplit of %d rows: %s\n", mine.batch, split);
        }
        sums[1] = (o->stop && *o->stop) || step == o->stop_at;
        if (!s && comm && comm->sum_f64(comm->user, sums, 2))
            s = rt_fail(ctx, ATTAMBA_ERR_IO, "the loss all-reduce over %d processes failed", ranks);
        if (!s) s = dp_apply(dp, step, &grad_norm, &lr);
        if (s) break;
        if (step == start_step + 1) first_secs = core_now() - t_step;
        else warm_secs += core_now() - t_step;
        p.step = step;
        p.tokens += (int64_t)B * T * h.accum;
        p.seconds = core_now() - t_start;
        last_loss = sums[0] / h.accum;
        int last = step == h.steps, stopping = sums[1] > 0;
        if (lead)
            fprintf(metrics, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, \"tokens\": %lld, "
                             "\"seconds\": %.3f}\n",
                    (long long)step, last_loss, lr, grad_norm, (long long)p.tokens, p.seconds);
        if (lead && ((o->val_every > 0 && step % o->val_every == 0) || last)) {
            model *reps[ATTAMBA_MAX_DEVICES]; /* every device of this process: the replicas hold m's weights */
            for (int i = 0; i < n_ctx; i++) reps[i] = dp_replica(dp, i);
            s = train_eval_replicas(reps, n_ctx, &d, train_end, d.n, T, B, o->val_windows, &val);
            if (s) break;
            fprintf(metrics, "{\"step\": %lld, \"val_loss\": %.6f, \"val_ppl\": %.4f}\n", (long long)step, val, exp(val));
        }
        if (lead) fflush(metrics);
        if (o->progress && lead) {
            /* the rate of the steps after the first, which also builds (or loads) the kernels */
            int64_t warm = step - start_step - 1;
            double per_step = warm ? warm_secs / (double)warm : first_secs, tok_s = (double)B * T * h.accum / per_step;
            char eta[32], suffix[200];
            fmt_eta(per_step * (double)(h.steps - step), eta, sizeof eta);
            int n = snprintf(suffix, sizeof suffix, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s%s  ETA %s",
                             (long long)step, (long long)h.steps, last_loss, lr, tok_s,
                             warm ? "" : " (with kernel builds)", eta);
            if (!isnan(val) && n > 0 && n < (int)sizeof suffix)
                snprintf(suffix + n, sizeof suffix - (size_t)n, "  val %.4f", val);
            core_progress("train", (double)step / (double)h.steps, last || stopping, suffix);
        }
        if ((o->ckpt_every > 0 && step % o->ckpt_every == 0) || last || stopping) {
            s = dp_sync(dp); /* every process: rank 0's state, which the checkpoint holds */
            if (!s && lead && (s = checkpoint_save(o->out, t, &h, &p, 2, err, sizeof err)))
                rt_fail(ctx, s, "checkpoint: %s", err);
        }
        if (!s && stopping && !last) {
            s = rt_fail(ctx, ATTAMBA_ERR_INTERRUPTED, "interrupted at step %lld; checkpoint saved in %s (--resume)",
                        (long long)step, o->out);
        }
    }
    if (!s && lead && model_save(m, o->out)) s = ATTAMBA_ERR_IO;
    if (!s && final_val) *final_val = val;
    if (metrics) fclose(metrics);
    free(metrics_path);
    free(tok);
    free(tgt);
    dp_destroy(dp);
    model_destroy(m);
    data_close(&d);
    return s;
}
