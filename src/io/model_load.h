/* model_load.h — model configs (config.json) into model config structs, and weights (safetensors)
 * into a model's named parameters. */
#ifndef KN_MODEL_LOAD_H
#define KN_MODEL_LOAD_H

#include "io/safetensors.h"
#include "ops/gemm_lowp.h"
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

/* Reduced-precision weights for inference (--weights-type): converts the matrix and conv weights
 * of a loaded table — F32 parameters of rank >= 2 whose name ends in ".weight", except embedding
 * tables (a last name part containing "embedding") and norms (a name containing "norm") — to
 * format t (F16, BF16 or Q8 blocks; see ops/gemm_lowp.h), keeping every other tensor F32. Each
 * converted parameter keeps its shape and gets dtype F16 / BF16 / U8 (= Q8) and data in one new
 * 64-byte aligned block returned in *store (NULL for f32 or when nothing matched); free it with
 * kn_aligned_free() after the model. The F32 values stay where they were (P->block or the mapped
 * file). linear, conv2d and the temporal conv run such weights in forward; backward refuses them.
 * *nconv and *bytes (may be NULL) receive the count of converted tensors and their new size. */
kn_status kn_params_to_lowp(kn_params *P, kn_wtype t, void **store, int *nconv, size_t *bytes);

/* Finds the single *.safetensors weight file of a component folder: the diffusers names first
 * (diffusion_pytorch_model.safetensors, model.safetensors), else the only .safetensors file.
 * `path` may also be a .safetensors file itself. Writes the path into out. */
kn_status kn_find_weights(const char *path, char *out, size_t n);

#endif
