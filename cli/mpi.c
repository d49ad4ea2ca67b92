/* `attamba train` under mpirun: the job's processes as an attamba_comm (include/attamba/attamba.h). Built
 * with MPI when CMake finds it (ATTAMBA_HAVE_MPI); a build without it refuses to run as one of
 * several processes rather than train alone N times. MPI's default error handler stays: a failed
 * collective ends the whole job with MPI's message. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* How many processes the launcher started (1 when not under mpirun / srun). */
static int launched_size(void) {
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v) v = getenv("PMI_SIZE");
    return v ? atoi(v) : 1;
}

#ifdef ATTAMBA_HAVE_MPI
#include <mpi.h>

/* MPI counts are int: large buffers go in pieces. */
enum { PIECE = INT_MAX / 16 };

/* The sum over the processes of n elements of `size` bytes, in place. */
static int sum(void *buf, int64_t n, MPI_Datatype type, size_t size) {
    for (int64_t o = 0; o < n; o += PIECE)
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)o * size, (int)(n - o < PIECE ? n - o : PIECE), type,
                          MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return 1;
    return 0;
}

static int sum_f32(void *user, float *buf, int64_t n) {
    (void)user;
    return sum(buf, n, MPI_FLOAT, sizeof *buf);
}

static int sum_f64(void *user, double *buf, int64_t n) {
    (void)user;
    return sum(buf, n, MPI_DOUBLE, sizeof *buf);
}

static int bcast(void *user, void *buf, size_t bytes) {
    (void)user;
    for (size_t o = 0; o < bytes; o += PIECE)
        if (MPI_Bcast((char *)buf + o, (int)(bytes - o < PIECE ? bytes - o : PIECE), MPI_BYTE, 0, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return 1;
    return 0;
}

int cli_mpi_begin(attamba_comm *c) {
    memset(c, 0, sizeof *c);
    c->size = 1;
    if (launched_size() < 2) return 0;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return cli_error("train", "MPI_Init failed"), -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    c->sum_f32 = sum_f32;
    c->sum_f64 = sum_f64;
    c->bcast = bcast;
    return 0;
}

void cli_mpi_end(const attamba_comm *c, int rc) {
    if (c->size < 2) return;
    if (rc) MPI_Abort(MPI_COMM_WORLD, rc); /* the others may wait in a collective: end them too */
    MPI_Finalize();
}
#else
int cli_mpi_begin(attamba_comm *c) {
    memset(c, 0, sizeof *c);
    c->size = 1;
    if (launched_size() < 2) return 0;
    return cli_error("train", "started as one of %d processes, but this build has no MPI (install libopenmpi-dev "
                              "and rebuild)", launched_size()), -1;
}

void cli_mpi_end(const attamba_comm *c, int rc) {
    (void)c;
    (void)rc;
}
#endif
