/* attamba bench suite: one fixed, versioned set of benchmarks run on every selected device, each
 * device's results as one JSON report (docs/bench/schema.json) with the device's measured ceilings
 * (bench peak) and every entry's fraction of its roofline, then report.md and the SVG plots made
 * from those files alone (bench report). The suite is the union of the bench subcommands: each step
 * below calls one of them with fixed options and takes the entries it writes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_peak.h"
#include "bench_report.h"
#include "bench_util.h"
#include "cli.h"

#ifndef ATTAMBA_GIT_COMMIT
#define ATTAMBA_GIT_COMMIT "unknown"
#endif

/* Bump when a step, its options or an entry's meaning changes: reports of different versions do
 * not measure the same things. */
enum { SUITE_VERSION = 1 };

/* One step: a bench subcommand and its options ('|'-separated) in the quick and the full suite
 * (NULL: not in that suite). Every step's entries must have distinct (bench, op, shape, variant). */
static const struct {
    const char *name;
    cli_command_fn fn;
    const char *quick, *full;
} steps[] = {
    {"gemm", bench_gemm_main, "--shapes|4096x512x512|--trans|nn,nt,tn",
     "--shapes|4096x512x512,4096x1536x512,4096x32000x512,512x512x4096|--trans|nn,nt,tn"},
    {"attention", bench_attention_main, "--seq|1024|--chunk|8|--window|32", ""},
    {"attention", bench_attention_main, "--seq|4096|--chunk|64|--window|32", NULL},
    {"attention-backward", bench_attention_backward_main, "--t|1024|--reps|2", ""},
    {"ssm", bench_ssm_main, "--T|1024|--P|8,64", ""},
    {"layer", bench_layer_main, "", ""},
    {"loss", bench_loss_main, "--rows|512", ""},
    {"optim", bench_optim_main, "--params|16000000", ""},
    {"decode", bench_decode_main,
     "--contexts|512,4096|--prefill-max|512|--steps|3|--only|transformer,attamba P=8 L=8", ""},
    {"train", bench_train_main, "--preset|small|--kind|attamba|--batch|4|--seq|128|--steps|2",
     "--preset|small|--kind|attamba|--batch|8|--seq|128|--steps|3"},
    {"train", bench_train_main, "--preset|small|--kind|transformer|--batch|4|--seq|128|--steps|2",
     "--preset|small|--kind|transformer|--batch|8|--seq|128|--steps|3"},
    {"train", bench_train_main, "--preset|paper-60m|--kind|attamba|--batch|1|--seq|128|--steps|1",
     "--preset|paper-60m|--kind|attamba|--batch|1|--seq|512|--steps|3"},
    {"train", bench_train_main, "--preset|paper-60m|--kind|transformer|--batch|1|--seq|128|--steps|1",
     "--preset|paper-60m|--kind|transformer|--batch|1|--seq|512|--steps|3"},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: attamba bench suite --out DIR [--quick | --full] [--devices all|gpu|cpu|P:D,... | --device P:D]\n"
            "                           [--only NAME,...] [--seconds S]\n\n"
            "Runs the benchmark suite (version %d) on each device: its ceilings (bench peak: FMA\n"
            "throughput, copy bandwidth, transfers, launch latency), GEMM on a model's shapes, compressed\n"
            "vs dense attention and its backward, SSM scan and conv1d, the layer, loss and optimizer\n"
            "kernels, prefill and decode vs context, and training steps of `small` and `paper-60m`\n"
            "(Attamba and transformer). Writes DIR/<device>.json per device (docs/bench/schema.json:\n"
            "every entry with its roofline fraction), then DIR/report.md and the SVG plots from those\n"
            "files alone (as `attamba bench report DIR` would). --quick (default) fits in about five\n"
            "minutes on two CPU cores; --full is for GPUs. --only: the steps named (peak always runs):\n"
            "gemm, attention, attention-backward, ssm, layer, loss, optim, decode, train.\n"
            "--seconds: the minimum time per measured case (quick 0.2, full 1).\n",
            SUITE_VERSION);
}

/* The report's name for a device: "<P>-<D>-<name>" with everything but [A-Za-z0-9.-] as '-'. */
static void device_slug(const attamba_context *ctx, char *out, size_t size) {
    const attamba_device_info *d = attamba_context_device(ctx);
    snprintf(out, size, "%d-%d-%s", d->platform_index, d->device_index, d->name);
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.'))
            *p = '-';
}

/* The entry's place under the device's roofline: with FLOPs, the attainable rate is
 * min(FMA peak, intensity x copy bandwidth); without, the copy bandwidth. */
static void add_roofline(cJSON *e, const bench_peak *pk) {
    double flop = bench_json_number(e, "flop"), bytes = bench_json_number(e, "bytes");
    cJSON *r = cJSON_AddObjectToObject(e, "roofline");
    if (bytes > 0) cJSON_AddNumberToObject(r, "intensity", flop / bytes);
    else cJSON_AddNullToObject(r, "intensity");
    double attainable = pk->copy_gbs, achieved = bench_json_number(e, "gbs");
    int compute = 0;
    if (flop > 0) {
        attainable = bytes > 0 ? CLI_MIN(pk->fma_gflops, flop / bytes * pk->copy_gbs) : pk->fma_gflops;
        compute = attainable >= pk->fma_gflops;
        achieved = bench_json_number(e, "gflops");
    }
    cJSON_AddStringToObject(r, "bound", compute ? "compute" : "memory");
    cJSON_AddNumberToObject(r, "attainable", attainable);
    cJSON_AddNumberToObject(r, "fraction", achieved / attainable);
}

static cJSON *device_json(const attamba_context *ctx, const bench_peak *pk) {
    const attamba_device_info *d = attamba_context_device(ctx);
    cJSON *o = cJSON_CreateObject();
    char id[32];
    snprintf(id, sizeof id, "%d:%d", d->platform_index, d->device_index);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "vendor", d->vendor);
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddStringToObject(o, "driver_version", d->driver_version);
    cJSON_AddStringToObject(o, "opencl_c_version", d->opencl_c_version);
    cJSON_AddStringToObject(o, "type", attamba_device_type_name(d->type));
    cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
    cJSON_AddNumberToObject(o, "clock_mhz", pk->clock_mhz);
    cJSON_AddNumberToObject(o, "global_mem_bytes", (double)d->global_mem_bytes);
    cJSON_AddNumberToObject(o, "local_mem_bytes", (double)d->local_mem_bytes);
    cJSON_AddNumberToObject(o, "max_work_group_size", (double)d->max_work_group_size);
    return o;
}

/* The report's header: schema, suite, time, host, library. */
static cJSON *report_header(int full, double seconds, const char *command) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "schema", "attamba-bench");
    cJSON_AddNumberToObject(r, "schema_version", 1);
    cJSON *s = cJSON_AddObjectToObject(r, "suite");
    cJSON_AddStringToObject(s, "name", full ? "full" : "quick");
    cJSON_AddNumberToObject(s, "version", SUITE_VERSION);
    cJSON_AddStringToObject(s, "command", command);
    cJSON_AddNumberToObject(s, "seconds", seconds);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    cJSON_AddStringToObject(r, "created_utc", when);
    cJSON *h = cJSON_AddObjectToObject(r, "host");
    struct utsname u;
    if (uname(&u) == 0) {
        cJSON_AddStringToObject(h, "hostname", u.nodename);
        char os[300];
        snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
        cJSON_AddStringToObject(h, "os", os);
    }
    cJSON_AddNumberToObject(h, "online_cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON *l = cJSON_AddObjectToObject(r, "library");
    cJSON_AddStringToObject(l, "version", attamba_version());
    cJSON_AddStringToObject(l, "git_commit", ATTAMBA_GIT_COMMIT);
    return r;
}

/* Runs step i on the device `id`, its entries (annotated with the roofline) appended to entries; a
 * failure is recorded in failures and the suite goes on. */
static void run_step(int i, int full, double seconds, const char *id, const char *tmp, const bench_peak *pk,
                     cJSON *entries, cJSON *failures) {
    char *opts = strdup(full ? steps[i].full : steps[i].quick), secs[32];
    snprintf(secs, sizeof secs, "%g", seconds);
    char *argv[40] = {(char *)steps[i].name, "--device", (char *)id, "--json", (char *)tmp};
    int argc = 5;
    if (strcmp(steps[i].name, "train") && strcmp(steps[i].name, "decode")) {
        argv[argc++] = "--seconds";
        argv[argc++] = secs;
    }
    for (char *save = NULL, *t = strtok_r(opts, "|", &save); t && argc < 39; t = strtok_r(NULL, "|", &save))
        argv[argc++] = t;
    printf("\n== %s", steps[i].name);
    for (int a = 1; a < argc; a++) printf(" %s", argv[a]);
    printf("\n");
    fflush(stdout);
    remove(tmp);
    double t0 = cli_now();
    int rc = steps[i].fn(argc, argv);
    size_t len;
    char *text = rc ? NULL : cli_read_file("bench suite", tmp, (size_t)1 << 30, &len);
    cJSON *got = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsArray(got)) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "bench", steps[i].name);
        char msg[400];
        if (rc) snprintf(msg, sizeof msg, "exited with status %d (its message is on stderr)", rc);
        else snprintf(msg, sizeof msg, "its JSON output is unreadable: %s", text ? "not an array" : "see stderr");
        cJSON_AddStringToObject(f, "message", msg);
        cJSON_AddItemToArray(failures, f);
        fprintf(stderr, "attamba bench suite: %s %s\n", steps[i].name, msg);
    } else {
        while (cJSON_GetArraySize(got) > 0) {
            cJSON *e = cJSON_DetachItemFromArray(got, 0);
            add_roofline(e, pk);
            cJSON_AddItemToArray(entries, e);
        }
    }
    printf("== %s: %.1f s\n", steps[i].name, cli_now() - t0);
    cJSON_Delete(got);
    free(text);
    free(opts);
    remove(tmp);
}

int bench_suite_main(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},    {"quick", no_argument, 0, 'q'},
                                         {"full", no_argument, 0, 'f'},         {"devices", required_argument, 0, 'D'},
                                         {"device", required_argument, 0, 'd'}, {"only", required_argument, 0, 'n'},
                                         {"seconds", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *devices = NULL, *device = NULL, *only = NULL;
    int full = 0, c;
    double seconds = -1;
    char command[1024] = "attamba bench";
    for (int a = 0; a < argc; a++) {
        size_t n = strlen(command);
        snprintf(command + n, sizeof command - n, " %s", argv[a]);
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:qfD:d:n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'q': full = 0; break;
        case 'f': full = 1; break;
        case 'D': devices = optarg; break;
        case 'd': device = optarg; break;
        case 'n': only = optarg; break;
        case 't':
            if (!cli_number("bench suite", "seconds", optarg, 0.001, 60, 0, &seconds)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!out || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (seconds < 0) seconds = full ? 1.0 : 0.2;
    if (cli_mkdirs(out)) return cli_error("bench suite", "cannot create %s", out);
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n = cli_open_devices(devices, device, ctxs);
    if (!n) return 1;
    /* Per device: its report, id and slug. The steps run interleaved (each step on every device in
     * turn), so that a busy spell of a shared machine falls on all devices alike. */
    struct {
        cJSON *report, *entries, *failures;
        bench_peak pk;
        char id[32], slug[160];
    } dev[ATTAMBA_MAX_DEVICES];
    int rc = 0, n_rep = 0; /* devices with a report */
    double t_all = cli_now();
    for (int d = 0; d < n && !rc; d++) {
        attamba_context *ctx = ctxs[d];
        device_slug(ctx, dev[d].slug, sizeof dev[d].slug);
        const attamba_device_info *di = attamba_context_device(ctx);
        snprintf(dev[d].id, sizeof dev[d].id, "%d:%d", di->platform_index, di->device_index);
        printf("=== device %s: %s (%s)\n", dev[d].id, di->name, di->platform_name);
        bench_peak *pk = &dev[d].pk;
        if (bench_peak_measure(ctx, CLI_MIN(seconds, 0.5), pk)) {
            rc = cli_error("bench suite", "device %s: cannot measure its peaks: %s", dev[d].id, attamba_context_last_error(ctx));
            break;
        }
        printf("peak: %.1f GFLOP/s FMA, copy %.1f GB/s, host->device %.1f GB/s, device->host %.1f GB/s, launch %.1f us\n",
               pk->fma_gflops, pk->copy_gbs, pk->write_gbs, pk->read_gbs, pk->launch_us);
        dev[d].report = report_header(full, seconds, command);
        cJSON_AddItemToObject(dev[d].report, "device", device_json(ctx, pk));
        cJSON_AddItemToObject(dev[d].report, "peak", bench_peak_json(pk));
        dev[d].entries = cJSON_AddArrayToObject(dev[d].report, "entries");
        dev[d].failures = cJSON_AddArrayToObject(dev[d].report, "failures");
        n_rep++;
    }
    for (int i = 0; i < (int)(sizeof steps / sizeof steps[0]) && !rc; i++)
        for (int d = 0; d < n_rep && (full ? steps[i].full : steps[i].quick) && bench_listed(only, steps[i].name); d++) {
            char tmp[4096];
            snprintf(tmp, sizeof tmp, "%s/.%s.step.json", out, dev[d].slug);
            run_step(i, full, seconds, dev[d].id, tmp, &dev[d].pk, dev[d].entries, dev[d].failures);
        }
    for (int d = 0; d < n_rep; d++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.json", out, dev[d].slug);
        if (!rc && bench_write_json(dev[d].report, path))
            rc = cli_error("bench suite", "cannot write %s", path);
        else if (!rc)
            printf("=== device %s: %d entries, %d failures -> %s\n", dev[d].id, cJSON_GetArraySize(dev[d].entries),
                   cJSON_GetArraySize(dev[d].failures), path);
        cJSON_Delete(dev[d].report);
    }
    cli_close_devices(ctxs, n);
    char err[512];
    if (!rc && bench_report_write(out, err, sizeof err)) rc = cli_error("bench suite", "%s", err);
    if (!rc) printf("suite: %.0f s; report: %s/report.md\n", cli_now() - t_all, out);
    return rc;
}
