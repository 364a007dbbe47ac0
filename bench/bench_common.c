/* bench_common.c — shared pieces of the model benchmarks. */
#include "bench_common.h"

#include "cli/cli.h"

#include <stdlib.h>

int kn_bench_unet_config(const char *cmd, const char *widths, long head_dim, long text_dim, long layers,
                         kn_unet3d_config *cfg) {
    *cfg = kn_unet3d_config_default();
    cfg->nblocks = 0;
    for (const char *p = widths; *p;) {
        char *end;
        long w = strtol(p, &end, 10);
        if (end == p || w < 1 || w > 65536 || cfg->nblocks >= KN_UNET_MAX_BLOCKS)
            return kn_cli_error("%s: --widths must be up to %d positive integers separated by commas", cmd,
                                KN_UNET_MAX_BLOCKS), 0;
        if (*end && *end != ',')
            return kn_cli_error("%s: bad --widths '%s'", cmd, widths), 0;
        cfg->block_out_channels[cfg->nblocks++] = (int)w;
        p = *end == ',' ? end + 1 : end;
    }
    if (cfg->nblocks == 0)
        return kn_cli_error("%s: --widths is empty", cmd), 0;
    for (int i = 0; i < cfg->nblocks; i++) {
        cfg->down_types[i] = i == cfg->nblocks - 1 ? KN_BLOCK_DOWN : KN_BLOCK_CROSS_ATTN_DOWN;
        cfg->up_types[i] = i == 0 ? KN_BLOCK_UP : KN_BLOCK_CROSS_ATTN_UP;
    }
    cfg->attention_head_dim = (int)head_dim;
    cfg->cross_attention_dim = (int)text_dim;
    cfg->layers_per_block = (int)layers;
    return 1;
}
