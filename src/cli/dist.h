/* dist.h — data-parallel training over MPI (OpenMPI). Only `kinema train` uses it: under mpirun
 * every rank trains on its own shard of each batch and the gradients are averaged with an
 * allreduce before every optimiser step; only rank 0 writes files. Outside mpirun nothing of MPI
 * is initialised. */
#ifndef KN_DIST_H
#define KN_DIST_H

#include "nn/nn.h"

/* Initialises MPI when the process was started by mpirun (OMPI_COMM_WORLD_SIZE / PMI_SIZE set);
 * sets *rank and *world (0 and 1 otherwise). */
kn_status kn_dist_init(int *argc, char ***argv, int *rank, int *world);
void kn_dist_finalize(void);
/* Averages the gradients of P over all ranks (sum, then / world), in place. */
kn_status kn_dist_average_grads(kn_params *P, void *user);
/* Mean of v over the ranks (v itself without MPI). */
double kn_dist_mean(double v);
/* Barrier (no-op without MPI). */
void kn_dist_barrier(void);
/* Broadcasts an int from rank 0 (for agreeing on errors and stops). */
int kn_dist_bcast_int(int v);

#endif
