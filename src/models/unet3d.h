/* unet3d.h — diffusers UNet3DConditionModel (ModelScope text-to-video, Zeroscope), as diffusers
 * 0.25 builds it, and the options the kinema cascade adds on top (see docs/design.md).
 *
 * Parameter names equal the diffusers state-dict names. Every size comes from the config. */
#ifndef KN_UNET3D_H
#define KN_UNET3D_H

#include "nn/layers.h"

#define KN_UNET_MAX_BLOCKS 6

typedef enum { KN_BLOCK_DOWN = 0, KN_BLOCK_CROSS_ATTN_DOWN, KN_BLOCK_UP, KN_BLOCK_CROSS_ATTN_UP } kn_block_type;

typedef struct kn_unet3d_config {
    int in_channels, out_channels;
    int nblocks;
    int block_out_channels[KN_UNET_MAX_BLOCKS];
    kn_block_type down_types[KN_UNET_MAX_BLOCKS];
    kn_block_type up_types[KN_UNET_MAX_BLOCKS];
    int layers_per_block;
    int downsample_padding;
    float mid_block_scale_factor;
    int norm_num_groups;
    float norm_eps;
    int cross_attention_dim;
    int attention_head_dim; /* diffusers' name; used as the number of heads... see unet3d.c */
    int sample_size;
} kn_unet3d_config;

/* diffusers' defaults (UNet3DConditionModel.__init__). */
kn_unet3d_config kn_unet3d_config_default(void);

typedef struct kn_unet_block {
    kn_block_type type;
    int nlayers, nattn;
    kn_resnet_l *resnets;
    kn_tconv_l *tconvs;
    kn_t2d_l *attns;
    kn_ttemp_l *tattns;
    int has_sampler;
    kn_sample_l sampler;
} kn_unet_block;

typedef struct kn_unet3d {
    kn_unet3d_config cfg;
    kn_params P;
    kn_conv_l conv_in, conv_out;
    kn_linear_l time_lin1, time_lin2;
    kn_ttemp_l transformer_in;
    kn_unet_block down[KN_UNET_MAX_BLOCKS], up[KN_UNET_MAX_BLOCKS], mid;
    kn_norm_l norm_out;
} kn_unet3d;

/* Builds the module tree and declares (and allocates) the parameters; values are zero until
 * loaded or initialised. Returns NULL + message on a bad config. */
kn_unet3d *kn_unet3d_new(const kn_unet3d_config *cfg);
void kn_unet3d_free(kn_unet3d *u);

/* Optional per-module outputs for checking against the fixtures' forward hooks: called with the
 * diffusers module name ("down_blocks.0.resnets.1", "mid_block", "conv_out", ...) and its output
 * (folded layout). */
typedef void (*kn_unet_hook)(const char *name, const kn_tensor *t, void *user);

/* sample (B, C, T, H, W), timesteps (B), text (B, L, cross_dim) -> out (B, C_out, T, H, W),
 * allocated from c->A. */
kn_var *kn_unet3d_forward(kn_ctx *c, const kn_unet3d *u, kn_var *sample, const float *timesteps, kn_var *text,
                          kn_unet_hook hook, void *hook_user);

#endif
