/* attamba tune: searches the tuning table's parameters on each device for the shapes a model uses
 * (attamba_tune) and keeps the winners in the kernel cache directory keyed by device and driver,
 * where every later run finds them. attamba tune --show prints the table in force and where each
 * value came from (attamba_tuning_print). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: attamba tune [--preset NAME | --model DIR] [--quick] [--tokens N] [--verbose]\n"
               "                    [--only gemm,gemm-inplace,norm,attention,attention-slices,\n"
               "                            attention-backward,attention-lanes,attention-path,conv,\n"
               "                            ssm-scan]\n"
               "                    [--device P:D | --devices LIST]\n"
               "       attamba tune --show [--device P:D | --devices LIST]\n\n"
               "Searches the device-dependent kernel parameters (src/ops/tuning.c) on each device for the\n"
               "shapes of a model (default preset paper-60m; N tokens per batch, default 512): the GEMM\n"
               "register tiles (gemm.vw, gemm.nv, gemm.rm; nn, nt, tn) and the plain B sizes they read in\n"
               "place (gemm.inplace_b_kib: 0, 256, 1024, 4096), the norms' group (norm.group) and\n"
               "the prefill attention tiles (attn.tk, attn.bq_short) with the model's mask, how many\n"
               "work-items share a row's head dims (attn.slices: 0, 4, 8, 16), the backward's blocks and\n"
               "tiles (bwd.*), whether compressed and sliding prefill puts 8 or 16 queries along the lanes\n"
               "(attn.qv: 0, 1, 2) with 4 or 8 keys per group (attn.rk), then whether attention (prefill\n"
               "and backward) goes through the GEMM and in blocks of how many queries (attn.gemm_bq: 0 =\n"
               "the kernels, 64, 128, 256); for Attamba models the conv1d work-item shape (conv.vc,\n"
               "conv.tt) and the SSM scan's quadratic path (ssm.quad_max: 0 or the model's segments;\n"
               "ssm.quad_heads: 1-8). Each candidate is checked against src/ref, then timed next to the\n"
               "values in force; a winner must beat them by 3%% in interleaved rounds. Winners are stored\n"
               "in the kernel cache directory, keyed by device and driver, and used by every later run\n"
               "there (source 'tuned' in --show). --quick: fewer candidates and shorter timings;\n"
               "--verbose: every candidate's time.\n\n"
               "--show prints, per device, its class and every parameter: its value and where it came from\n"
               "(the class row, the default, the device, tuned, or $ATTAMBA_GEMM, $ATTAMBA_NORM_GROUP,\n"
               "$ATTAMBA_SSM_PATH).\n");
}

int cli_tune(int argc, char **argv) {
    static const struct option opts[] = {{"show", no_argument, 0, 's'},        {"device", required_argument, 0, 'd'},
                                         {"devices", required_argument, 0, 'D'}, {"preset", required_argument, 0, 'p'},
                                         {"model", required_argument, 0, 'm'},   {"quick", no_argument, 0, 'q'},
                                         {"tokens", required_argument, 0, 't'},  {"verbose", no_argument, 0, 'v'},
                                         {"only", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *devices = NULL, *preset = NULL, *model_dir = NULL, *only = NULL;
    int show = 0, quick = 0, verbose = 0, c;
    double tokens = 512;
    optind = 1;
    while ((c = getopt_long(argc, argv, "sd:D:p:m:qt:vo:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': show = 1; break;
        case 'd': device = optarg; break;
        case 'D': devices = optarg; break;
        case 'p': preset = optarg; break;
        case 'm': model_dir = optarg; break;
        case 'q': quick = 1; break;
        case 'v': verbose = 1; break;
        case 'o': only = optarg; break;
        case 't':
            if (!cli_number("tune", "tokens", optarg, 16, 65536, 1, &tokens)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || (preset && model_dir)) {
        usage(stderr);
        return 2;
    }
    attamba_config *cfg = NULL;
    char err[512];
    if (!show && attamba_config_load(model_dir ? model_dir : preset ? preset : "paper-60m", &cfg, err, sizeof err))
        return cli_error("tune", "%s", err);
    attamba_context *ctxs[ATTAMBA_MAX_DEVICES];
    int n = cli_open_devices(devices, device, ctxs), rc = n ? 0 : 1;
    attamba_tune_params p = {.config = cfg, .tokens = (int)tokens, .quick = quick, .verbose = verbose, .only = only};
    for (int i = 0; i < n && !rc; i++) {
        if (i) printf("\n");
        attamba_status s = show ? attamba_tuning_print(ctxs[i], stdout) : attamba_tune(ctxs[i], &p, stdout);
        if (s) rc = cli_error("tune", "%s", attamba_context_last_error(ctxs[i]));
    }
    cli_close_devices(ctxs, n);
    attamba_config_destroy(cfg);
    return rc;
}
