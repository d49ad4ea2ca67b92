/* cli.h: what the subcommands of the attamba tool share. */
#ifndef ATTAMBA_CLI_H
#define ATTAMBA_CLI_H

#include <stdio.h>

#include "attamba/attamba.h"

/* Every subcommand: argv[0] is its name. Returns the process exit code. */
typedef int (*cli_command_fn)(int argc, char **argv);

/* Opens the device named by --device (may be NULL) or $ATTAMBA_DEVICE; prints the error and
 * returns NULL on failure. */
attamba_context *cli_open_device(const char *device);
/* Opens a device set (attamba_contexts_create) for --devices LIST; a --device given instead opens that
 * one device; neither: $ATTAMBA_DEVICES, else the default device. Returns the count, 0 on failure
 * (said on stderr). */
int cli_open_devices(const char *devices, const char *device, attamba_context **out);
void cli_close_devices(attamba_context **ctxs, int n);
/* Parses arg as a number in [lo, hi] (a whole number when integer); on failure prints
 * "attamba CMD: bad --NAME" with the range and returns 0. */
int cli_number(const char *cmd, const char *name, const char *arg, double lo, double hi, int integer, double *out);
/* Prints "attamba <cmd>: <message>" to stderr and returns 1 (for `return cli_error(...)`). */
int cli_error(const char *cmd, const char *fmt, ...);

/* cli/util.c. Seconds on a monotonic clock. */
double cli_now(void);
/* A regular file, at most max bytes of it (0: all), NUL-terminated (*len without the NUL); NULL
 * (said on stderr as cmd's error) on failure. */
char *cli_read_file(const char *cmd, const char *path, size_t max, size_t *len);
/* size bytes to path through path.tmp and a rename; non-zero (said) on failure. */
int cli_write_file(const char *cmd, const char *path, const void *data, size_t size);
/* A progress line on stderr ("label [####....]  42% suffix"), redrawn in place on a terminal; only the
 * final one (done) when stderr is not a terminal. */
void cli_progress(const char *label, double frac, int done, const char *suffix);
/* mkdir -p: 0 when dir exists afterwards. */
int cli_mkdirs(const char *dir);
#define CLI_MIN(a, b) ((a) < (b) ? (a) : (b))

/* The processes of an MPI job (cli/mpi.c): under mpirun, MPI_Init and the communicator; else one
 * process (c->size 1). Returns -1 (said on stderr) when it cannot start. cli_mpi_end finishes the job;
 * a non-zero rc ends every process. */
int cli_mpi_begin(attamba_comm *c);
void cli_mpi_end(const attamba_comm *c, int rc);

int cli_devices(int argc, char **argv);
int cli_init(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_forward(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_tokenizer(int argc, char **argv);
int cli_data(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_tune(int argc, char **argv);
int cli_compile(int argc, char **argv);
int bench_gemm_main(int argc, char **argv);
int bench_decode_main(int argc, char **argv);
int bench_batch_main(int argc, char **argv);
int bench_train_main(int argc, char **argv);
int bench_ssm_main(int argc, char **argv);
int bench_loss_main(int argc, char **argv);
int bench_layer_main(int argc, char **argv);
int bench_optim_main(int argc, char **argv);
int bench_attention_backward_main(int argc, char **argv);
int bench_attention_main(int argc, char **argv);
int bench_suite_main(int argc, char **argv);
int bench_peak_main(int argc, char **argv);
int bench_report_main(int argc, char **argv);
int bench_compare_main(int argc, char **argv);

#endif
