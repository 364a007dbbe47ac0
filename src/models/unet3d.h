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
    /* Cascade options (kinema's, not diffusers'): kn_unet3d_config_default() leaves every one at
     * the value that builds diffusers' model exactly, so diffusers configs and weights load
     * unchanged. New parameters get names diffusers never uses. config.json keys: the field names.
     *   fps_cond            Make-A-Video frame-rate conditioning: emb += fps_embedding(fps), where
     *                       fps_embedding = sinusoid(C0) -> Linear(C0, 4 C0) "fps_embedding.linear_1"
     *                       -> SiLU -> Linear(4 C0, 4 C0) "fps_embedding.linear_2".
     *   noise_aug_cond      Imagen Video conditioning augmentation: emb += aug_embedding(level), the
     *                       same kind of embedding of the per-sample noise level (0..1000),
     *                       "aug_embedding.linear_1/2".
     *   text_pool           a pooled text embedding added to the time embedding, as both designs
     *                       have beside cross-attention (Imagen: the pooled text embedding; Make-A-
     *                       Video, after DALL-E 2: the projected CLIP embedding): emb +=
     *                       text_pool_embedding(mean over tokens of encoder_hidden_states), a
     *                       Linear(cross_dim, 4 C0) "text_pool_embedding.linear_1" -> SiLU ->
     *                       Linear(4 C0, 4 C0) "text_pool_embedding.linear_2". Global attributes
     *                       (colour, shape, motion) then reach every ResNet block directly.
     *   cond_channels       extra input channels concatenated to the sample before conv_in (SR:
     *                       upsampled low-res latents; interpolation: masked frames + mask);
     *                       conv_in.weight is then (C0, in_channels + cond_channels, 3, 3).
     *   spatial_only        no temporal layers at all (Make-A-Video's second SR stage): temp_convs,
     *                       temp_attentions and transformer_in are not built, their names absent.
     *   temporal_attention  1 (default): diffusers' model. 0: temp_attentions and transformer_in
     *                       are not built, temp_convs kept (Imagen Video's SR stages). */
    int fps_cond;
    int noise_aug_cond;
    int text_pool;
    int cond_channels;
    int spatial_only;
    int temporal_attention;
} kn_unet3d_config;

/* diffusers' defaults (UNet3DConditionModel.__init__); cascade options off. */
kn_unet3d_config kn_unet3d_config_default(void);

/* A small model on those defaults (recipes, tests, benchmarks): n levels of widths[i], the down
 * block of level i (and its mirror up block) with cross-attention when attn[i] != 0, one layer
 * per block, norm groups, head dim and cross-attention width as given; 4 in/out channels. */
kn_unet3d_config kn_unet3d_config_small(int n, const int *widths, const int *attn, int head_dim, int groups,
                                        int cross_dim);

typedef struct kn_unet_block {
    kn_block_type type;
    int nlayers, nattn;
    kn_resnet_l *resnets;
    kn_tconv_l *tconvs; /* NULL when the model has no temporal convolutions */
    kn_t2d_l *attns;
    kn_ttemp_l *tattns; /* NULL without attention or without temporal attention */
    int has_sampler;
    kn_sample_l sampler;
} kn_unet_block;

typedef struct kn_unet3d {
    kn_unet3d_config cfg;
    kn_params P;
    kn_conv_l conv_in, conv_out;
    kn_linear_l time_lin1, time_lin2;
    kn_linear_l fps_lin1, fps_lin2; /* cfg.fps_cond */
    kn_linear_l aug_lin1, aug_lin2; /* cfg.noise_aug_cond */
    kn_linear_l pool_lin1, pool_lin2; /* cfg.text_pool */
    int has_tconv, has_tattn;       /* temporal layers built (spatial_only / temporal_attention) */
    kn_ttemp_l transformer_in;      /* declared when has_tattn */
    kn_unet_block down[KN_UNET_MAX_BLOCKS], up[KN_UNET_MAX_BLOCKS], mid;
    kn_norm_l norm_out;
    /* Cross-attention capture (nn/layers.h) used by every forward call whose kn_unet3d_cond gives
     * none: lets callers that do not build the conditioning themselves (kn_t2v_run) capture. NULL
     * (the default): off, nothing computed. Set it around one run only; a model with a capture
     * attached must not be run from two threads at once. */
    kn_attn_capture *capture;
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

/* The per-call conditioning of the cascade options. Every pointer may be NULL (not given). */
typedef struct kn_unet3d_cond {
    const float *fps;       /* (B) frames per second; required iff cfg.fps_cond */
    const float *noise_aug; /* (B) augmentation noise level 0..1000; required iff cfg.noise_aug_cond */
    kn_var *cond;           /* (B, cond_channels, T, H, W); required iff cfg.cond_channels > 0 */
    /* (B) 1 = the sample is an image (Imagen Video joint training): every temporal layer
     * (transformer_in, temp_convs, temp_attentions) is the identity for it, i.e. its residual branch
     * is skipped. A batch may mix images and videos: the branch is computed for the whole batch and
     * each image sample's rows take the layer's input instead (a row select recorded on the tape,
     * so gradients are exact); when every sample is an image the layers are not run at all. NULL:
     * all videos. */
    const int *is_image;
    /* Cross-attention capture: every spatial transformer's attn2 reports the attention of the
     * capture's token positions for its sample (see kn_attn_capture in nn/layers.h); NULL: the
     * model's own u->capture, which is NULL by default (off: the output is bitwise unchanged).
     * Not compatible with gradient checkpointing (the layers then run without it). */
    kn_attn_capture *capture;
} kn_unet3d_cond;

/* kn_unet3d_forward with the cascade conditioning (cond may be NULL: nothing given). Fails with
 * a one-line message when an input the config requires is missing, or one it does not use is
 * given, or a shape is wrong. */
kn_var *kn_unet3d_forward_ex(kn_ctx *c, const kn_unet3d *u, kn_var *sample, const float *timesteps, kn_var *text,
                             const kn_unet3d_cond *cond, kn_unet_hook hook, void *hook_user);

/* Temporal-layer initialisation (Make-A-Video; diffusers' own TemporalConvLayer init): zeroes the
 * last conv (conv4) of every temp_conv and the proj_out weight and bias of every temporal
 * transformer (temp_attentions, transformer_in), so each temporal layer starts as the identity
 * and a spatial (image) model extended with them computes exactly what it computed before. */
void kn_unet3d_init_temporal_identity(kn_unet3d *u);

/* Zeroes the output layers the cascade options add (fps_embedding.linear_2,
 * aug_embedding.linear_2, text_pool_embedding.linear_2) and the cond_channels input slice of conv_in.weight, so a model with
 * options, initialised (kn_params_init_default) and then given a base model's weights for the
 * rest, starts out computing the base model. Recommended after kn_params_init_default. */
void kn_unet3d_init_options_zero(kn_unet3d *u);

/* 1 when the parameter `name` belongs to a temporal layer (temp_convs, temp_attentions,
 * transformer_in), 0 otherwise: a trainer freezes spatial weights (CogVideo) or temporal ones. */
int kn_unet3d_temporal_param(const char *name);

#endif
