/* attamba tune --show: the tuning table in force on each device (src/ops/tuning.c): every
 * device-dependent kernel parameter, its value and where the value came from. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "ops/tuning.h"

static void usage(FILE *f) {
    fprintf(f, "usage: attamba tune --show [--device P:D | --devices all|gpu|cpu|P:D,...]\n\n"
               "Prints, per device, its class (cpu, nvidia, amd, intel-gpu, gpu, accelerator, other) and\n"
               "every device-dependent kernel parameter: its value and where it came from (the class row,\n"
               "the default, the device, or $ATTAMBA_GEMM, $ATTAMBA_NORM_GROUP, $ATTAMBA_SSM_PATH).\n");
}

int cli_tune(int argc, char **argv) {
    static const struct option opts[] = {{"show", no_argument, 0, 's'},        {"device", required_argument, 0, 'd'},
                                         {"devices", required_argument, 0, 'D'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *devices = NULL;
    int show = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "sd:D:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': show = 1; break;
        case 'd': device = optarg; break;
        case 'D': devices = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!show || optind < argc) {
        usage(stderr);
        return 2;
    }
    rt_ctx *ctxs[ATTAMBA_MAX_DEVICES];
    int n = cli_open_devices(devices, device, ctxs);
    for (int i = 0; i < n; i++) {
        if (i) printf("\n");
        ops_tuning_print(ctxs[i], stdout);
    }
    cli_close_devices(ctxs, n);
    return n ? 0 : 1;
}
