/* model_load.h — model configs (config.json) into model config structs, and weights (safetensors)
 * into a model's named parameters. */
#ifndef KN_MODEL_LOAD_H
#define KN_MODEL_LOAD_H

#include "io/safetensors.h"
#include "models/unet3d.h"
#include "models/vae.h"
#include "models/clip_text.h"

/* Reads a diffusers UNet3DConditionModel config.json; missing keys take diffusers' defaults. */
kn_status kn_unet3d_config_load(const char *path, kn_unet3d_config *cfg);

/* Reads a diffusers AutoencoderKL config.json. */
kn_status kn_vae_config_load(const char *path, kn_vae_config *cfg);

/* Reads a transformers CLIPTextConfig config.json (or a CLIPConfig's text_config). */
kn_status kn_clip_text_config_load(const char *path, kn_clip_text_config *cfg);

/* Fills every parameter of P from tensors of the same name in the given files (searched in
 * order), converting F16/BF16 to F32. A missing tensor or a shape mismatch is an error naming the
 * tensor and both shapes. *unused (may be NULL) receives the number of tensors in the files that
 * no parameter took. */
kn_status kn_params_load(kn_params *P, kn_safetensors *const *files, int nfiles, int *unused);

/* As kn_params_load, but an F32 tensor of the right shape is used in place, zero-copy, from the
 * memory-mapped file (the files must stay open while the model is used); F16/BF16 and reshaped
 * tensors are converted into the params block. For inference: such a table cannot be trained
 * (its values are outside P->block). *mapped (may be NULL) receives the bytes used in place. */
kn_status kn_params_load_mapped(kn_params *P, kn_safetensors *const *files, int nfiles, size_t *mapped);

/* Finds the single *.safetensors weight file of a component folder: the diffusers names first
 * (diffusion_pytorch_model.safetensors, model.safetensors), else the only .safetensors file.
 * `path` may also be a .safetensors file itself. Writes the path into out. */
kn_status kn_find_weights(const char *path, char *out, size_t n);

#endif
