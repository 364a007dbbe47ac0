/* export.h — writing kinema's models as a diffusers pipeline folder (model_index.json, unet/,
 * vae/, text_encoder/, tokenizer/, scheduler/) that `kinema generate --model` and diffusers-style
 * tools read. */
#ifndef KN_EXPORT_H
#define KN_EXPORT_H

#include "diffusion/cascade.h"
#include "diffusion/scheduler.h"
#include "models/clip_text.h"
#include "models/unet3d.h"
#include "models/vae.h"

/* Writes the folder `dir` (replaced as a whole: built next to it, then renamed into place).
 * tokenizer_src is a folder with vocab.json + merges.txt, copied into tokenizer/. Parameter values
 * are taken from each model's params table. */
typedef struct kn_export_opts {
    kn_dtype dtype;   /* KN_F32 (default) or KN_F16 / KN_BF16 to halve the files */
    double fps;       /* recorded as model_index.json "kinema": {"fps", "frames"} when > 0 */
    int frames;
    /* a cascade: the temporal and spatial SR UNets (either may be NULL) go to tsr/ and ssr/
     * (config.json + diffusion_pytorch_model.safetensors, UNet3DConditionModel with kinema's
     * options), and how to chain them to model_index.json "kinema": {"cascade": {...}} */
    const kn_unet3d *tsr, *ssr;
    kn_cascade_info cascade;
} kn_export_opts;

kn_status kn_export_t2v(const char *dir, const kn_unet3d *unet, const kn_vae *vae, const kn_clip_text *text,
                        const kn_sched_config *sched, const char *tokenizer_src, const char *pad_token,
                        const kn_export_opts *opts);

/* Writes one params table as a safetensors file (atomically), stored as dtype (F32/F16/BF16). */
kn_status kn_params_save(const kn_params *P, const char *path, kn_dtype dtype);

#endif
