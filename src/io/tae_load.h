/* tae_load.h — tiny autoencoders (TAESD family, TAEHV) from safetensors weights. The model
 * configs are read from the weight shapes, so no config file is needed. */
#ifndef KN_TAE_LOAD_H
#define KN_TAE_LOAD_H

#include "io/safetensors.h"
#include "models/taesd.h"
#include "models/taehv.h"

/* Reads a TAESD config from the encoder and/or decoder weights (either may be NULL, not both):
 * hidden and latent channel counts from the conv shapes, and a GroupNorm branch for every Block
 * whose "N.pool.*" tensors exist. Errors name the file and the tensor. */
kn_status kn_taesd_config_from_weights(const kn_safetensors *enc, const kn_safetensors *dec, kn_taesd_config *cfg);

/* Builds and fills a TAESD from opened weights; every tensor must be used exactly once.
 * NULL + message on failure. */
kn_taesd *kn_taesd_from_weights(const kn_safetensors *enc, const kn_safetensors *dec);

/* Opens taesd_encoder / taesd_decoder style .safetensors files (either path may be NULL) and
 * loads them. F16/BF16 weights are converted to F32. A file may also use diffusers'
 * AutoencoderTiny names ("encoder.layers.N..." / "decoder.layers.N..."): pass the same
 * diffusion_pytorch_model.safetensors as both paths to load both networks from it. The model
 * still takes and returns images in [0, 1] (diffusers' wrapper maps to [-1, 1] outside).
 * NULL + message on failure. */
kn_taesd *kn_taesd_load(const char *encoder_path, const char *decoder_path);

/* Reads a TAEHV config from "encoder.*" / "decoder.*" weights (taew2_1 / taehv layout: patch 1).
 * Other layouts (patch 2 or 4, other block structures) are rejected with a message. */
kn_status kn_taehv_config_from_weights(const kn_safetensors *st, kn_taehv_config *cfg);
kn_taehv *kn_taehv_from_weights(const kn_safetensors *st);
kn_taehv *kn_taehv_load(const char *path);

#endif
