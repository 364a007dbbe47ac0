/* recipes.h — named training recipes: model sizes, data, steps and optimiser settings. */
#ifndef KN_RECIPES_H
#define KN_RECIPES_H

#include "diffusion/cascade.h"
#include "train/cascade.h"
#include "train/clip_train.h"
#include "train/trainer.h"

typedef struct kn_recipe {
    const char *name;
    const char *about;
    kn_train_data data;
    kn_vae_config vae;
    kn_train_opts vae_opts;
    kn_clip_text_config text;
    kn_unet3d_config unet;
    kn_train_opts unet_opts;
    kn_sched_config sched;
    /* the cascade's SR stages, trained after the base on its frozen VAE and text encoder */
    int has_tsr, has_ssr;
    kn_unet3d_config tsr, ssr;
    kn_train_opts tsr_opts, ssr_opts;
    kn_sr_opts tsr_so, ssr_so;
    kn_train_data tsr_data, ssr_data;
    kn_cascade_info cascade; /* how generate chains them */
    /* the CLIP stage (train/clip_train.h), after the VAE and before the base: the text encoder
     * pretrained contrastively against a video tower on clip_batch clips per step; the base then
     * keeps it frozen (unet_opts.freeze_text). clip.frames and clip.text_dim follow data.frames
     * and text.hidden_size (kn_recipe_get and the JSON loader set them). */
    int has_clip;
    kn_clip_tower_config clip;
    kn_train_opts clip_opts;
    int clip_batch;
    int clip_held; /* held clips of the retrieval measure reported after the stage */
} kn_recipe;

/* Fills r with the recipe called name; KN_ERR_ARG (message lists the names) if unknown. */
kn_status kn_recipe_get(const char *name, kn_recipe *r);
/* The names, NULL-terminated. */
const char *const *kn_recipe_names(void);

#endif
