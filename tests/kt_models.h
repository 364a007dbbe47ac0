/* kt_models.h — the tiny model configurations several tests build cascades from (a 2-level VAE of
 * 8/16 channels, a 1-layer CLIP text encoder of 16 positions), so each test file does not
 * repeat them. */
#ifndef KT_MODELS_H
#define KT_MODELS_H

#include "models/clip_text.h"
#include "models/vae.h"

static inline kn_vae_config kt_tiny_vae_config(void) {
    kn_vae_config vc = kn_vae_config_default();
    vc.nblocks = 2;
    vc.block_out_channels[0] = 8;
    vc.block_out_channels[1] = 16;
    vc.norm_num_groups = 4;
    vc.layers_per_block = 1;
    return vc;
}

static inline kn_clip_text_config kt_tiny_text_config(int hidden) {
    kn_clip_text_config cc = kn_clip_text_config_default();
    cc.hidden_size = hidden;
    cc.intermediate_size = 16;
    cc.num_hidden_layers = 1;
    cc.num_attention_heads = 2;
    cc.max_position_embeddings = 16;
    return cc;
}

#endif
