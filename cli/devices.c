/* attamba devices: every OpenCL device, and which one the default selection picks. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_devices(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: attamba devices\n\nLists every OpenCL device as P:D (use with --device or "
                   "ATTAMBA_DEVICE) and marks the one selected by default (*).\n");
            return 0;
        }
        return 2;
    }
    attamba_device_info *devs;
    int n;
    char err[1024];
    if (attamba_devices_list(&devs, &n, err, sizeof err)) return cli_error("devices", "%s", err);
    attamba_context *ctx = NULL;
    const attamba_device_info *chosen = NULL;
    if (attamba_context_create(NULL, &ctx, err, sizeof err) == ATTAMBA_OK) chosen = attamba_context_device(ctx);
    printf("%-5s %-28s %-36s %-6s %4s %9s %9s %8s %6s %4s %4s  %s\n", "dev", "platform", "name", "type", "CUs",
           "global", "max alloc", "local", "max wg", "fp16", "fp64", "OpenCL C");
    for (int i = 0; i < n; i++) {
        const attamba_device_info *d = &devs[i];
        int sel = chosen && chosen->platform_index == d->platform_index && chosen->device_index == d->device_index;
        char id[16];
        snprintf(id, sizeof id, "%d:%d%s", d->platform_index, d->device_index, sel ? "*" : "");
        printf("%-5s %-28.28s %-36.36s %-6s %4u %8.2fG %8.2fG %7.0fK %6zu %4s %4s  %s\n", id, d->platform_name,
               d->name, attamba_device_type_name(d->type), d->compute_units, d->global_mem_bytes / 1073741824.0,
               d->max_alloc_bytes / 1073741824.0, d->local_mem_bytes / 1024.0, d->max_work_group_size,
               d->has_fp16 ? "yes" : "no", d->has_fp64 ? "yes" : "no", d->opencl_c_version);
    }
    if (!n) printf("(no devices)\n");
    if (!ctx) fprintf(stderr, "attamba devices: default selection failed: %s\n", err);
    attamba_context_destroy(ctx);
    free(devs);
    return ctx || !n ? 0 : 1;
}
