/* attamba: the command-line tool. Parses the subcommand and hands over. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int cmd_bench(int argc, char **argv);
int cli_open_devices(const char *devices, const char *device, attamba_context **out) {
    if (devices && device) {
        fprintf(stderr, "attamba: give --device or --devices, not both\n");
        return 0;
    }
    if (device) return (out[0] = cli_open_device(device)) != NULL;
    char err[1024];
    int n = 0;
    if (attamba_contexts_create(devices, out, ATTAMBA_MAX_DEVICES, &n, err, sizeof err)) {
        fprintf(stderr, "attamba: cannot open the devices: %s\n", err);
        return 0;
    }
    return n;
}

void cli_close_devices(attamba_context **ctxs, int n) {
    for (int i = 0; i < n; i++) attamba_context_destroy(ctxs[i]);
}

static int cmd_version(int argc, char **argv);

static const struct {
    const char *name;
    cli_command_fn fn;
    const char *help;
} commands[] = {
    {"devices", cli_devices, "list OpenCL devices and what they can do"},
    {"init", cli_init, "write a seeded random model (config + weights)"},
    {"quantize", cli_quantize, "store a model's projections as f16 or 8-bit blocks (q8)"},
    {"info", cli_info, "a model's config, parameter count and KV-cache bytes"},
    {"forward", cli_forward, "logits of token sequences, as raw f32"},
    {"generate", cli_generate, "stream text from a prompt"},
    {"eval", cli_eval, "perplexity and bits per byte on a text file; recall accuracy on a task file"},
    {"train", cli_train, "train a model (or resume) on a text, token or task file"},
    {"tokenize", cli_tokenize, "a text file as a binary token file for train"},
    {"tokenizer", cli_tokenizer, "tokenizer train: a SentencePiece tokenizer for a text (lossless)"},
    {"data", cli_data, "synthetic recall tasks (mqar, passkey) as task files for train and eval --task"},
    {"demo", cli_demo, "train Attamba and a transformer on the bundled corpus, compare, sample"},
    {"compile", cli_compile, "every program variant a model needs, prebuilt (ATTAMBA_PROGRAM_DIR)"},
    {"tune", cli_tune, "the tuning table in force on each device (--show)"},
    {"bench", cmd_bench, "benchmarks: bench suite, bench peak, bench gemm, ..."},
    {"version", cmd_version, "print the library version"},
};

static const struct {
    const char *name;
    cli_command_fn fn;
    const char *help;
} benches[] = {
    {"suite", bench_suite_main, "the benchmark suite on every device: JSON reports, report.md, roofline SVGs"},
    {"peak", bench_peak_main, "the device's ceilings: FMA GFLOP/s, copy and transfer GB/s, launch latency"},
    {"report", bench_report_main, "report.md and the SVG plots of a suite directory, from its JSON alone"},
    {"compare", bench_compare_main, "suite reports (or bench --json files) side by side, with ratios"},
    {"train", bench_train_main, "training tokens/s per preset, and against the same model in PyTorch (--torch)"},
    {"decode", bench_decode_main, "model: decode and prefill tokens/s and cache bytes vs context length"},
    {"batch", bench_batch_main, "batched decoding: aggregate tokens/s of 1, 4, 16 sequences stepped together"},
    {"gemm", bench_gemm_main, "GEMM: CLBlast vs the own kernel vs host BLAS on a d=512 model's shapes"},
    {"ssm", bench_ssm_main, "K/V SSM: conv1d, scan (sequential vs chunked), decode steps vs copy bandwidth"},
    {"loss", bench_loss_main, "LM head: cross-entropy, argmax, sampling vs the copy bandwidth"},
    {"layer", bench_layer_main, "layer ops (norms, RoPE, SwiGLU, embedding, bias) vs copy bandwidth"},
    {"optim", bench_optim_main, "training: AdamW, sum of squares, column sums, cross-entropy backward vs copy"},
    {"attention-backward", bench_attention_backward_main, "attention: prefill backward vs forward, causal vs compressed"},
    {"attention", bench_attention_main, "attention: compressed (Attamba) vs dense causal prefill, key visits"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: attamba <command> [options]   (attamba <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nenvironment: ATTAMBA_DEVICE (P:D|gpu|cpu|accelerator), ATTAMBA_DEVICES (a set: all|gpu|cpu|\n"
               "P:D,P:D,...), ATTAMBA_CACHE_DIR (kernel binary cache; 0 disables), ATTAMBA_PROGRAM_DIR (prebuilt\n"
               "binaries), ATTAMBA_PROFILE=1 (per-kernel timing), ATTAMBA_LOG\n"
               "(error|warn|info|debug); ATTAMBA_GEMM, ATTAMBA_NORM_GROUP, ATTAMBA_SSM_PATH override the tuning\n"
               "table (attamba tune --show)\n");
}

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "attamba %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_number(const char *cmd, const char *name, const char *arg, double lo, double hi, int integer, double *out) {
    char *end;
    double v = strtod(arg, &end);
    if (*end || end == arg || !(v >= lo && v <= hi) || (integer && v != floor(v))) {
        cli_error(cmd, "bad --%s '%s' (%s in [%g, %g])", name, arg, integer ? "a whole number" : "a number", lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

attamba_context *cli_open_device(const char *device) {
    attamba_context *ctx = NULL;
    char err[1024];
    attamba_status s = attamba_context_create(device, &ctx, err, sizeof err);
    if (s) {
        fprintf(stderr, "attamba: cannot open a device: %s\n", err);
        return NULL;
    }
    return ctx;
}

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("attamba %s\n", attamba_version());
    return 0;
}

static int cmd_bench(int argc, char **argv) {
    if (argc >= 2)
        for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
            if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc - 1, argv + 1);
    FILE *f = argc >= 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? stderr : stdout;
    if (f == stderr) fprintf(stderr, "attamba bench: unknown benchmark '%s'\n", argv[1]);
    fprintf(f, "usage: attamba bench <name> [options]\n\nbenchmarks:\n");
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
        fprintf(f, "  %-18s %s\n", benches[i].name, benches[i].help);
    return f == stderr || argc < 2 ? 2 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "attamba: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
