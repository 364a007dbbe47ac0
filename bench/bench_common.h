/* bench_common.h — shared pieces of the model benchmarks. */
#ifndef KN_BENCH_COMMON_H
#define KN_BENCH_COMMON_H

#include "models/unet3d.h"

/* A ModelScope-structured UNet3D config (CrossAttnDown... + Down, Up + CrossAttnUp...) from a
 * comma-separated --widths list. Returns 1, or 0 after printing a one-line error naming cmd. */
int kn_bench_unet_config(const char *cmd, const char *widths, long head_dim, long text_dim, long layers,
                         kn_unet3d_config *cfg);

#endif
