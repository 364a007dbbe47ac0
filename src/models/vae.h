/* vae.h — diffusers AutoencoderKL (the Stable Diffusion / ModelScope image autoencoder), applied
 * to video frame by frame. Parameter names are the diffusers state-dict names. */
#ifndef KN_VAE_H
#define KN_VAE_H

#include "nn/layers.h"

#define KN_VAE_MAX_BLOCKS 6

typedef struct kn_vae_config {
    int in_channels, out_channels, latent_channels;
    int nblocks;
    int block_out_channels[KN_VAE_MAX_BLOCKS];
    int layers_per_block;
    int norm_num_groups;
    float scaling_factor;
} kn_vae_config;

kn_vae_config kn_vae_config_default(void); /* diffusers' AutoencoderKL defaults (1 block of 64) */

typedef struct {
    kn_norm_l norm;
    kn_attn_l attn;
} kn_vae_attn_l;

typedef struct {
    int nlayers;
    kn_resnet_l *resnets;
    int has_sampler;
    kn_sample_l sampler;
} kn_vae_block;

typedef struct kn_vae {
    kn_vae_config cfg;
    kn_params P;
    /* encoder */
    kn_conv_l enc_conv_in, enc_conv_out, quant_conv;
    kn_vae_block enc_down[KN_VAE_MAX_BLOCKS];
    kn_resnet_l enc_mid_res[2];
    kn_vae_attn_l enc_mid_attn;
    kn_norm_l enc_norm_out;
    /* decoder */
    kn_conv_l post_quant_conv, dec_conv_in, dec_conv_out;
    kn_vae_block dec_up[KN_VAE_MAX_BLOCKS];
    kn_resnet_l dec_mid_res[2];
    kn_vae_attn_l dec_mid_attn;
    kn_norm_l dec_norm_out;
} kn_vae;

kn_vae *kn_vae_new(const kn_vae_config *cfg);
void kn_vae_free(kn_vae *v);

typedef void (*kn_vae_hook)(const char *name, const kn_tensor *t, void *user);

/* x (N, in, H, W) in [-1, 1] -> mean, logvar (N, latent, H/2^k, W/2^k); logvar clamped to
 * [-30, 20] as diffusers' DiagonalGaussianDistribution does. */
kn_status kn_vae_encode(kn_ctx *c, const kn_vae *v, kn_var *x, kn_var **mean, kn_var **logvar, kn_vae_hook hook,
                        void *user);
/* z (N, latent, h, w) (already divided by scaling_factor) -> (N, out, 2^k h, 2^k w). */
kn_var *kn_vae_decode(kn_ctx *c, const kn_vae *v, kn_var *z, kn_vae_hook hook, void *user);

#endif
