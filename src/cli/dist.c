/* dist.c — MPI allreduce of gradients for data-parallel training. */
#include "cli/dist.h"

#include <mpi.h>
#include <stdlib.h>

static int active, world_size = 1;

kn_status kn_dist_init(int *argc, char ***argv, int *rank, int *world) {
    *rank = 0;
    *world = 1;
    const char *w = getenv("OMPI_COMM_WORLD_SIZE");
    if (!w)
        w = getenv("PMI_SIZE");
    if (!w || atoi(w) <= 1)
        return KN_OK;
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return kn_fail(KN_ERR_INTERNAL, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, world);
    active = 1;
    world_size = *world;
    return KN_OK;
}

void kn_dist_finalize(void) {
    if (active)
        MPI_Finalize();
    active = 0;
}

kn_status kn_dist_average_grads(kn_params *P, void *user) {
    (void)user;
    if (!active || world_size == 1)
        return KN_OK;
    /* the flat gradient block in chunks (MPI counts are int) */
    size_t n = P->numel, chunk = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += chunk) {
        int c = (int)(n - off < chunk ? n - off : chunk);
        if (MPI_Allreduce(MPI_IN_PLACE, P->grad_block + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return kn_fail(KN_ERR_INTERNAL, "MPI_Allreduce of gradients failed");
    }
    float inv = 1.0f / (float)world_size;
    for (size_t i = 0; i < n; i++)
        P->grad_block[i] *= inv;
    return KN_OK;
}

void kn_dist_barrier(void) {
    if (active)
        MPI_Barrier(MPI_COMM_WORLD);
}

int kn_dist_bcast_int(int v) {
    if (active)
        MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return v;
}

double kn_dist_mean(double v) {
    if (!active || world_size == 1)
        return v;
    double sum = 0;
    MPI_Allreduce(&v, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return sum / world_size;
}
