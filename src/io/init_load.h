/* init_load.h — `kinema train --init DIR`: start training from an exported model folder (a
 * previous run's DIR/model, or any diffusers text-to-video folder whose shapes fit the recipe).
 *
 *     kn_init_report rep;
 *     kn_init_from_folder("runs/a/model", vae, text, unet, tsr, ssr, &rep);  // after init_default
 *     // rep.vae_scale: the folder's latent scaling factor; rep.fresh: recipe parameters the
 *     // folder lacks (temporal layers of an image model being inflated) kept as initialised
 *
 * Weights are matched by name (the diffusers / transformers state-dict names, as everywhere in
 * kinema), converted from F16/BF16 to F32 where stored that way, and written into each model's
 * params table. A tensor whose shape differs from the recipe's, a spatial parameter the folder
 * lacks, or a tensor of the folder that no parameter of the recipe takes (a bigger model) is an
 * error naming the tensor. A temporal parameter of a UNet (kn_unet3d_temporal_param) that the
 * folder lacks keeps the value it had (the identity init of kn_unet3d_init_temporal_identity):
 * an image UNet inflated to video (Make-A-Video / CogVideo). Likewise the fps / noise-augmentation
 * / pooled-text embeddings of a cascade-option UNet (fps_embedding.*, aug_embedding.*,
 * text_pool_embedding.*): before loading, a UNet
 * gets kn_unet3d_init_options_zero, so those the folder lacks add nothing and the model starts out
 * computing the folder's. */
#ifndef KN_INIT_LOAD_H
#define KN_INIT_LOAD_H

#include "models/clip_text.h"
#include "models/unet3d.h"
#include "models/vae.h"

typedef struct kn_init_report {
    float vae_scale;     /* vae/config.json "scaling_factor" */
    int loaded;          /* parameters taken from the folder, all models together */
    int fresh;           /* temporal parameters the folder lacked (kept as initialised) */
    int64_t fresh_numel;
    char fresh_first[160]; /* the first of them, for the report ("" when none) */
    int fresh_options;   /* fps / aug embedding parameters the folder lacked (zero output) */
    int tsr_loaded, ssr_loaded; /* 1 when tsr/ or ssr/ was in the folder and loaded */
    int vae_only;        /* 1: the folder had vae/ but neither text_encoder/ nor unet/ */
} kn_init_report;

/* Loads dir/vae, dir/text_encoder and dir/unet into vae, text and unet (the VAE required; the
 * text encoder and UNet both, or neither: a folder holding only vae/ starts a new model on a
 * trained autoencoder, rep->vae_only), and
 * dir/tsr, dir/ssr into tsr, ssr when both the model (non-NULL) and the folder have them. Fails
 * with a one-line message naming the folder and the tensor; the models may then hold a mix of
 * loaded and initial values. */
kn_status kn_init_from_folder(const char *dir, kn_vae *vae, kn_clip_text *text, kn_unet3d *unet, kn_unet3d *tsr,
                              kn_unet3d *ssr, kn_init_report *rep);

#endif
